"""Worker processes of the stages: how work fans out, and how every worker lives and dies.

:func:`map_unordered` runs a function over items in this process, a local process pool or Ray
tasks (clean uses it). Stages with a specialised transport keep it (tokenize's pipes,
tokenizer/workers.py; the crawl's shared-memory helpers, collect/helpers.py) and share the
lifecycle here:

- a worker dies with its parent (:func:`worker_started`): Linux kills it when the parent dies
  (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread sees the parent change and exits;
- Ctrl-C is the parent's: a worker ignores SIGINT, the parent cancels what is queued, stops its
  workers at once and the command says "interrupted; rerun the same command to resume".

What a killed stage leaves (``.NAME.PID.tmp`` files and folders) the next run removes when it
takes the run's lock (lmforge.rundir.remove_stale_temps).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 0.5
"""How often a worker without prctl looks whether its parent is gone."""

STOP_SECONDS = 1.0
"""How long stopped workers get to exit on SIGTERM before SIGKILL (Ctrl-C answers within 2 s)."""


# ---------------------------------------------------------------- in a worker


def worker_started(parent_pid: int) -> None:
    """Call first thing in a worker process: die with ``parent_pid``, leave Ctrl-C to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bind_to_parent(parent_pid)


def bind_to_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` dies, even by SIGKILL.

    Linux: the kernel sends SIGKILL when the parent exits (prctl(2), PR_SET_PDEATHSIG; it fires
    when the *thread* that started this process ends, so workers are started and stopped by one
    thread). Elsewhere, or if prctl fails, a daemon thread polls getppid(): a process whose
    parent died is re-parented, so its parent pid changes.
    """
    if not _set_pdeathsig(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="lmforge-parent-watch").start()
    if os.getppid() != parent_pid:  # the parent died before the line above: nobody will signal us
        os._exit(1)


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


# ---------------------------------------------------------------- fan-out


def map_unordered(fn: Callable, items: Iterable, workers: int, executor: str = "local") -> Iterator:
    """``fn(item)`` for every item, yielded as each finishes (in no fixed order).

    ``executor``: ``local`` runs ``workers`` spawned processes (in this process when ``workers``
    is 1 or less), ``ray`` runs Ray tasks. ``fn`` and the items must pickle (a module-level
    function, or a functools.partial of one). An error in ``fn``, Ctrl-C, or closing the iterator
    early cancels what has not started and stops the workers at once; their half-done items
    are redone by a rerun.
    """
    items = list(items)
    if executor == "ray":
        return _map_ray(fn, items, workers)
    if executor != "local":
        raise ValueError(f"executor {executor!r} is not one of local, ray")
    if workers <= 1 or len(items) <= 1:
        return (fn(item) for item in items)
    return _map_pool(fn, items, min(workers, len(items)))


def _map_pool(fn: Callable, items: list, workers: int) -> Iterator:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from lmforge.errors import LmforgeError

    # spawn, not fork: the parent may hold threads (tqdm's monitor), which fork does not copy safely.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_started, initargs=(os.getpid(),))
    finished = False
    try:
        futures = [pool.submit(fn, item) for item in items]
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:
                codes = [p.exitcode for p in (getattr(pool, "_processes", None) or {}).values()]
                raise LmforgeError(f"a worker process died{f' (exit codes {codes})' if codes else ''}: out of "
                                   "memory? use fewer workers; a rerun resumes") from None
            yield result
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            stop_pool(pool)


def stop_pool(pool) -> None:
    """Cancel a ProcessPoolExecutor's queued work and end its processes now (SIGTERM, then SIGKILL)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    # The pool's manager thread also reaps its workers; waiting for it after they are gone means
    # none is left half-reaped (seen as a live child) when this returns.
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    stop_processes(processes)
    if manager is not None:
        manager.join(STOP_SECONDS)


def stop_processes(processes: list) -> None:
    """Terminate ``multiprocessing.Process`` objects and reap them; SIGKILL who outlives STOP_SECONDS."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    end = time.monotonic() + STOP_SECONDS
    for proc in processes:
        proc.join(max(0.0, end - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def import_ray(section: str = "clean"):
    """Ray, or an error that says how to install it (``section``: the config section asking)."""
    from lmforge.errors import LmforgeError

    try:
        import ray
    except ImportError:
        raise LmforgeError(f"{section}: executor = 'ray' needs Ray: pip install 'lmforge[ray]' "
                           f"(or set [{section}] executor = 'local')") from None
    return ray


def _apply(fn: Callable, item):
    return fn(item)


def _map_ray(fn: Callable, items: list, workers: int) -> Iterator:
    """Ray tasks: on the cluster named by RAY_ADDRESS (or one already joined), else on a Ray
    started here with ``workers`` CPUs and stopped at the end. Tasks that write files must write
    them on storage every node shares."""
    ray = import_ray()
    started = not ray.is_initialized()
    pending: list = []
    try:  # Ctrl-C during ray.init too must stop what it started
        if started and os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        elif started:
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        task = ray.remote(_apply)
        pending = [task.remote(fn, item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:  # an error, Ctrl-C or an early close: what has not finished is cancelled
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished, or Ray is going down: nothing to cancel
                pass
        if started:
            ray.shutdown()
