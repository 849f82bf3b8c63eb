"""Helper processes for the crawler's exchanges (request, header parsing, links, charset, gzip,
digests: exchange.py).

That work runs under the GIL; in a few forked processes, each with a few threads, it runs
beside the other pages' instead of under the crawl process's one GIL. Calls go out as 8-byte
messages on one pipe every helper thread reads, so whichever is free takes the next one; each
fetch slot has its own shared-memory window for the pickled call and its answer.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import queue
import select
import struct
import threading
import time

from lmforge.executor import stop_processes


class TooLarge(Exception):
    """A helper's answer did not fit its window (see :meth:`Helpers.run_once`)."""


class Helpers:
    """Runs calls in ``n`` helper processes of ``threads`` threads each, or in the calling
    thread when ``n`` is 0.

    A crawl's CPU time (HTTP parsing, links, compression) runs under the GIL; in helper
    processes it runs beside the other pages'. Each fetch thread borrows one of
    ``slots`` slots: a window of shared memory (anonymous, inherited by fork) that carries its
    pickled call and then the answer, and a pipe on which a helper says the answer is there.
    Calls go out as 8-byte messages on one pipe that every helper reads (writes of up to
    PIPE_BUF bytes are atomic), so whichever helper is free takes the next call: a 2.5 MB page
    no longer holds up the calls queued behind it on its helper. No manager or feeder threads,
    whose GIL time cost as much as the fetching itself with a ProcessPoolExecutor. On the
    2-core demo-site benchmark 2 helpers made the most pages/s (docs/collect.md).
    """

    def __init__(self, n: int, slots: int = 1, window: int = 16 << 20, threads: int = 1, init: tuple = ()):
        """``init``: ``(fn, *args)`` each helper process runs once, before its first call."""
        self.processes, self.free, self.lock = [], queue.SimpleQueue(), threading.Lock()
        self.jobs = None  # the write end of the calls pipe, None once closed
        if n <= 0:
            return
        import multiprocessing

        # fork: a helper starts in milliseconds with the modules already imported (spawn
        # would import lmforge again in each); it runs only a pure function, so the
        # parent's threads do not matter to it.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        jobs_in, self.jobs = os.pipe()
        done = [os.pipe() for _ in range(max(n, slots))]
        self.windows = [mmap.mmap(-1, window) for _ in done]  # pages are only taken when written
        for i in range(n):
            proc = context.Process(target=_serve, args=(jobs_in, self.jobs, done, self.windows, threads, init,
                                                        os.getpid()),
                                   daemon=True, name=f"lmforge-helper-{i}")
            proc.start()
            self.processes.append(proc)
        os.close(jobs_in)
        self.done, self.polls = [], []
        for slot, (mine, theirs) in enumerate(done):
            os.close(theirs)  # only the helpers hold it: when all are gone, a read here sees EOF
            self.done.append(mine)
            self.polls.append(select.poll())
            self.polls[-1].register(mine, select.POLLIN)
            self.free.put(slot)

    def run(self, fn, *args):
        """``fn(*args)`` in a helper; in this thread when there is none, or when the call or its
        answer does not fit the window (``fn`` then runs twice: for a function of its arguments)."""
        return self._run(fn, args, again=True)

    def run_once(self, fn, *args):
        """As :meth:`run`, for a call with side effects (a fetch): an answer too big for its
        window raises :class:`TooLarge` instead of running the call again here."""
        return self._run(fn, args, again=False)

    def _run(self, fn, args, again: bool):
        slot = self.free.get() if self.processes else None
        if slot is None:  # no helpers, or they were closed meanwhile: in this thread
            self.free.put(None)  # and pass the word on to the next thread waiting
            return fn(*args)
        try:
            answer = self._call(slot, fn, args)
        except (EOFError, OSError):  # a helper was killed: carry on without them
            self._lost()
            answer = None
        self._give_back(slot)
        if answer is _TOO_BIG and not again:
            raise TooLarge(f"the answer of {getattr(fn, '__name__', fn)} is larger than the helpers' window")
        if answer is None or answer is _TOO_BIG:  # the call too big for the window, or no helper any more
            return fn(*args)
        ok, value = answer
        if not ok:
            raise value
        return value

    def _call(self, slot: int, fn, args):
        """``(ok, value)`` from a helper; None when the call does not fit the window (or the
        helpers were closed), _TOO_BIG when the answer does not."""
        data = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        window = self.windows[slot]
        if len(data) > len(window):
            return None
        window[:len(data)] = data
        with self.lock:  # close() must not close the pipe (and free its number) under a write
            if self.jobs is None:
                return None
            os.write(self.jobs, struct.pack("<iI", slot, len(data)))
        while not self.polls[slot].poll(1000):
            if any(not proc.is_alive() for proc in self.processes):  # it may have held our call
                raise EOFError
        reply = os.read(self.done[slot], 4)
        if len(reply) < 4:
            raise EOFError
        (size,) = struct.unpack("<i", reply)
        return pickle.loads(memoryview(window)[:size]) if size >= 0 else _TOO_BIG

    def _give_back(self, slot: int) -> None:
        if self.processes:
            self.free.put(slot)
        else:  # closed meanwhile: nobody borrows this slot again
            os.close(self.done[slot])

    def _lost(self) -> None:
        if self.processes:
            logging.getLogger(__name__).warning("a helper process died; going on in the crawl process")
            self.close()

    def close(self, wait: float = 2.0) -> None:
        """Stop the helpers: calls in flight get ``wait`` seconds to be answered, then they are killed."""
        processes, self.processes = self.processes, []
        with self.lock:  # the helpers exit once the calls already sent are answered
            if self.jobs is not None:
                os.close(self.jobs)
                self.jobs = None
        while True:  # the free slots' pipes (a borrowed one is closed when given back)
            try:
                slot = self.free.get_nowait()
            except queue.Empty:
                break
            if slot is not None:
                os.close(self.done[slot])
        self.free.put(None)  # wakes a thread waiting for a slot: it runs the work itself
        end = time.monotonic() + wait
        for proc in processes:
            proc.join(timeout=max(0.0, end - time.monotonic()))
        stop_processes(processes)


_TOO_BIG = object()


def _serve(jobs: int, jobs_out: int, done: list, windows: list, threads: int, init: tuple, parent_pid: int) -> None:
    """A helper process: ``threads`` threads run the calls named on ``jobs``, each answering in
    its slot's window (a call that waits on the network leaves the others to run)."""
    import gc

    from lmforge.executor import worker_started

    worker_started(parent_pid)  # dies with the crawl, which handles Ctrl-C and closes our pipes
    gc.freeze()  # what fork copied is not collected here: no copy-on-write faults from gc passes
    os.close(jobs_out)  # the crawl's end, copied by fork: closed, so that its exit reads as EOF
    for mine, _ in done:
        os.close(mine)
    if init:
        try:
            init[0](*init[1:])
        except Exception:  # noqa: BLE001 - the calls that need it will fail and say why
            logging.getLogger(__name__).warning("helper set-up failed", exc_info=True)
    others = [threading.Thread(target=_serve_calls, args=(jobs, done, windows), daemon=True)
              for _ in range(threads - 1)]
    for thread in others:
        thread.start()
    _serve_calls(jobs, done, windows)
    for thread in others:
        thread.join()


def _serve_calls(jobs: int, done: list, windows: list) -> None:
    # Every message is 8 bytes, written whole (under PIPE_BUF) and read whole: threads and
    # processes reading the one pipe each get whole messages.
    while len(message := os.read(jobs, 8)) == 8:
        slot, size = struct.unpack("<iI", message)
        window = windows[slot]
        try:
            fn, args = pickle.loads(memoryview(window)[:size])
            answer = (True, fn(*args))
        except Exception as exc:  # raised again in the crawl process, as if run there
            answer = (False, exc)
        try:
            data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except (TypeError, AttributeError, pickle.PicklingError):  # an exception pickle cannot carry
            data = pickle.dumps((False, RuntimeError(f"in a helper process: {answer[1]!r}")))
        if len(data) <= len(window):
            window[:len(data)] = data
        try:
            os.write(done[slot][1], struct.pack("<i", len(data) if len(data) <= len(window) else -1))
        except OSError:  # the crawl closed this slot meanwhile
            pass
