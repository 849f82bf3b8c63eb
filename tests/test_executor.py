"""lmforge.executor: fan-out gives every result once, stops its workers on an error or an early
close, a worker dies with its parent (prctl, or the getppid watch), and a killed run's temporary
files are removed unless a live writer holds them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge import executor
from lmforge.executor import map_unordered, remove_stale_temp

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


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_temp_keeps_what_a_live_writer_holds(tmp_path):
    dead = _dead_pid()
    stale_file = tmp_path / "tokens" / f".train_000.bin.{dead}.tmp"
    stale_dir = tmp_path / "checkpoints" / f".step_40.{dead}.tmp"
    no_pid = tmp_path / "docs" / ".part-00000.parquet.tmp"
    mine = tmp_path / f".config.toml.{os.getpid()}.tmp"
    kept = [tmp_path / "docs" / "part-00000.parquet", tmp_path / ".complete" / "clean", tmp_path / "notes.tmp"]
    for path in (stale_file, no_pid, mine, *kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (stale_dir / "inner").mkdir(parents=True)
    (stale_dir / "inner" / "model.safetensors").write_text("x")

    removed = remove_stale_temp(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir, no_pid])
    assert not stale_file.exists() and not stale_dir.exists() and not no_pid.exists()
    assert mine.exists() and all(p.exists() for p in kept)
    assert remove_stale_temp(tmp_path / "missing") == []


def test_remove_stale_temp_sees_a_reused_pid(tmp_path):
    """A live process that started after the file was last written did not write it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        old = tmp_path / f".shard.bin.{proc.pid}.tmp"
        new = tmp_path / f".other.bin.{proc.pid}.tmp"
        old.write_text("x")
        new.write_text("x")
        an_hour_ago = time.time() - 3600
        os.utime(old, (an_hour_ago, an_hour_ago))
        if executor._process_start_time(proc.pid) is None:
            pytest.skip("no process start times here")
        assert remove_stale_temp(tmp_path) == [old]
        assert new.exists()
    finally:
        proc.kill()
        proc.wait()
