"""Workers die with their stage: a SIGKILLed parent leaves no process behind, Ctrl-C stops a stage
within about 2 seconds with the resume hint, and a killed stage's temporary files go next time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("the river that runs through the old town has shaped the lives of its people for centuries and "
         "farmers relied on its floods to bring fresh soil to their fields while merchants used the current").split()


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie nobody reaped (a container's init may not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _jsonl(path: Path, n: int) -> Path:
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(rng.choices(WORDS, k=300)) + f". Page {i}.",
                                "url": f"https://example.org/{i}"}) + "\n")
    return path


def _clean_command(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "lmforge", "clean", "--input", str(tmp_path / "in.jsonl"), "--out",
            str(tmp_path / "out"), "--workers", "2", "--no-quality"]


def _start_clean(tmp_path: Path) -> subprocess.Popen:
    _jsonl(tmp_path / "in.jsonl", 6000)
    return subprocess.Popen(_clean_command(tmp_path), env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_TOKENIZE = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from lmf_tokenizer_data import make_texts, write_docs
from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer
from lmforge.tokenizer import tokenize
tmp = Path({tmp!r})
texts = make_texts(200)
save_tokenizer_dir(train_tokenizer(texts, 400, "gpt4", ["<|endoftext|>"]), tmp / "tok")
files = [write_docs(tmp / "docs" / f"{{i}}.parquet", make_texts(40000, seed=i)) for i in range(4)]
tokenize.TASK_BYTES = 20000
try:
    tokenize.tokenize_docs(files, tmp / "tok", tmp / "tokens", 7, 0.1, 10**6, workers=3)
except KeyboardInterrupt:
    sys.exit("interrupted; rerun the same command to resume")
"""


def _start_tokenize(tmp_path: Path) -> subprocess.Popen:
    script = _TOKENIZE.format(tests=str(ROOT / "tests" / "tokenizer"), tmp=str(tmp_path))
    return subprocess.Popen([sys.executable, "-c", script], env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _busy_workers(proc: subprocess.Popen, n: int) -> list[int]:
    """Wait until ``proc`` has ``n`` worker processes (and gives them a moment to take work)."""
    assert _wait_for(lambda: len(descendants(proc.pid)) >= n or proc.poll() is not None, 60), "no workers started"
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    workers = descendants(proc.pid)
    assert proc.poll() is None and len(workers) >= n, "the stage ended before it could be killed: give it more input"
    return workers


@pytest.mark.parametrize("start, n", [(_start_clean, 2), (_start_tokenize, 2)], ids=["clean", "tokenize"])
def test_sigkill_of_the_parent_leaves_no_worker(tmp_path, start, n):
    proc = start(tmp_path)
    try:
        workers = _busy_workers(proc, n)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert _wait_for(lambda: not any(alive(p) for p in workers), 5), \
            f"still running 5 s after the parent died: {[p for p in workers if alive(p)]}"
        if start is _start_clean:  # the same command resumes, and leaves no temporary file behind
            again = subprocess.run(_clean_command(tmp_path), env=_env(), capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stderr
            out = tmp_path / "out"
            assert (out / ".complete" / "clean").exists() and not list(out.rglob("*.tmp"))
            assert json.loads((out / "stats" / "clean.json").read_text())["records"] == 6000
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("start, n", [(_start_clean, 2), (_start_tokenize, 2)], ids=["clean", "tokenize"])
def test_ctrl_c_stops_the_stage_within_two_seconds(tmp_path, start, n):
    proc = start(tmp_path)
    try:
        workers = _busy_workers(proc, n)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole process group
        _, err = proc.communicate(timeout=30)
        seconds = time.monotonic() - t0
        assert seconds < 2.5, f"took {seconds:.1f} s to stop"
        assert proc.returncode != 0 and "Traceback" not in err, err
        assert "interrupted; rerun the same command to resume" in err
        assert _wait_for(lambda: not any(alive(p) for p in workers), 2)
    finally:
        for pid in [proc.pid, *descendants(proc.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_crawl_stops_on_ctrl_c_within_two_seconds_and_its_helpers_with_it(tmp_path):
    import socket

    with socket.socket() as silent:  # connections complete in the backlog and are never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        proc = subprocess.Popen([sys.executable, "-m", "lmforge", "crawl", url, "--out", str(tmp_path / "crawl"),
                                 "--quiet", "--set", "collect.helper_processes=2", "--set", "collect.obey_robots=false"],
                                env=_env(), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            helpers = _busy_workers(proc, 2)
            t0 = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            seconds = time.monotonic() - t0
            assert seconds < 2.5, f"took {seconds:.1f} s to stop"
            assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err, err
            assert _wait_for(lambda: not any(alive(p) for p in helpers), 2)
        finally:
            for pid in [proc.pid, *descendants(proc.pid)]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
