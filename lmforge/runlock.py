"""One writer per run directory: an OS file lock on ``<run>/.lock``.

The kernel releases the lock when its process dies (``kill -9`` included), so a crashed run never
leaves a stale lock behind; the file's content (PID, command, current stage) only tells a second
process who holds it. Commands that only read a run (``status``, ``report``, ``serve``,
``sample`` of a finished checkpoint) never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
from pathlib import Path

from lmforge.errors import LmforgeError

LOCK_NAME = ".lock"


class RunInUse(LmforgeError):
    """Another process holds the run directory's lock."""

    exit_code = 3


class RunLock:
    """``with RunLock(root):`` holds ``root/.lock`` exclusively or raises :class:`RunInUse` at once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LmforgeError(f"{self.root}: cannot write the run directory ({exc.strerror}); "
                               "choose another runs_dir or name, or fix its permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUse(f"{self.root} is in use by {describe_holder(self.root)}; wait for it to finish "
                           f"or stop it (see `lmforge status {self.root}`)") from None
        self._fd = fd
        self.set_stage("")

    def set_stage(self, stage: str) -> None:
        """Record what this process is doing, for `lmforge status` and a refused second process."""
        if self._fd is None:
            return
        info = {"pid": os.getpid(), "command": _command_line(), "stage": stage}
        data = json.dumps(info).encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            # Emptied before unlocking: a reader never takes a finished run's PID for a live one.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder(root: str | os.PathLike) -> dict | None:
    """Who holds the lock of ``root`` right now (pid, command, stage), or None if nobody does."""
    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(root: str | os.PathLike) -> str:
    info = holder(root) or {}
    pid, command = info.get("pid", "?"), info.get("command", "")
    return f"PID {pid}" + (f" ({command})" if command else "")


def _read_info(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}  # being rewritten this instant


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "/lmforge")):
        argv[0] = "lmforge"
    return shlex.join(argv)[:300]
