"""lmforge.executor: fan-out gives every result once, stops its workers on an error or an early
close, and a worker dies with its parent (prctl, or the getppid watch)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge.executor import map_unordered

ROOT = Path(__file__).resolve().parents[1]


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    time.sleep(0.05)
    return x


def own_pid(_) -> int:
    return os.getpid()


def test_every_result_once_in_process_and_in_a_pool():
    assert sorted(map_unordered(square, range(20), 1)) == [x * x for x in range(20)]
    assert sorted(map_unordered(square, range(20), 2)) == [x * x for x in range(20)]
    assert list(map_unordered(square, [], 2)) == []


def test_an_error_in_a_worker_is_raised_and_the_workers_stop():
    import multiprocessing

    with pytest.raises(ValueError, match="three"):
        list(map_unordered(fail_on_three, range(40), 2))
    time.sleep(0.2)
    assert not multiprocessing.active_children()


def test_closing_early_stops_the_workers():
    import multiprocessing

    results = map_unordered(fail_on_three, [0, 1, 2] * 30, 2)
    next(results)
    t0 = time.monotonic()
    results.close()
    seconds = time.monotonic() - t0
    assert seconds < 2, f"closing took {seconds:.1f} s"
    assert not multiprocessing.active_children()


def die(x: int) -> int:
    if x == 2:
        os._exit(9)  # as the kernel's OOM killer would end it
    time.sleep(0.2)
    return x


def test_a_worker_that_dies_is_one_clear_error():
    from lmforge.errors import LmforgeError

    with pytest.raises(LmforgeError, match="a worker process died .*use fewer workers"):
        list(map_unordered(die, range(6), 2))


def test_an_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="not one of local, ray"):
        map_unordered(square, [1], 2, "dask")


_ORPHAN = """
import multiprocessing as mp, os, sys, time
sys.path.insert(0, {root!r})
from lmforge import executor
if {no_prctl}:
    executor._set_pdeathsig = lambda sig: False
def child(parent):
    executor.worker_started(parent)
    print(os.getpid(), flush=True)
    time.sleep(60)
if __name__ == "__main__":
    p = mp.get_context("fork").Process(target=child, args=(os.getpid(),))
    p.start()
    time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc").is_dir() or sys.platform != "linux", reason="Linux process tree")
@pytest.mark.parametrize("no_prctl", [False, True], ids=["prctl", "getppid-watch"])
def test_a_worker_dies_with_its_killed_parent(no_prctl):
    import signal

    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN.format(root=str(ROOT), no_prctl=no_prctl)],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def running() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    end = time.monotonic() + 5
    while running() and time.monotonic() < end:
        time.sleep(0.05)
    alive = running()
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


def test_closing_early_cancels_the_ray_tasks():
    """On a Ray this process did not start (a cluster), closing must cancel the queued tasks:
    the CPUs are free again at once instead of after the 12 s of work left."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # time.sleep: Ray's workers import it by name (a function of this test module they could not)
        results = map_unordered(time.sleep, [0.0] + [3.0] * 8, 2, "ray")
        assert next(results) is None
        t0 = time.monotonic()
        results.close()
        assert time.monotonic() - t0 < 2
        end = time.monotonic() + 5
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < end:
            time.sleep(0.1)
        assert ray.available_resources().get("CPU", 0) == 2, "tasks still hold the CPUs after close"
        assert ray.is_initialized()  # not ours to stop
    finally:
        ray.shutdown()
