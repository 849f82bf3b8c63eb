"""The run directory: the contract between stages.

Every stage reads the previous stage's artifacts and writes its own under ``runs/<name>/``.
Files are written to a temporary name and renamed, so a crash never leaves a half-written file
under its final name; a stage is complete only when its marker exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name ends in ``.tmp`` so readers that glob for ``*.parquet`` or ``*.bin``
    never see it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run, ``runs/<name>/``, as laid out in DESIGN.md."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def crawl(self) -> Path:
        return self.root / "crawl"

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def clean_parts(self) -> Path:
        """The clean stage's finished shards while it runs (what a resumed clean starts from)."""
        return self.root / "clean_parts"

    @property
    def stats(self) -> Path:
        return self.root / "stats"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def _marker(self, stage: str) -> Path:
        return self.root / ".complete" / stage

    def _started(self, stage: str) -> Path:
        return self.root / ".started" / stage

    def is_complete(self, stage: str) -> bool:
        """The stage finished (whether it is still up to date is `lmforge status`'s question)."""
        return self._marker(stage).exists()

    def read_record(self, stage: str) -> dict | None:
        """The completion record of a stage (its fingerprint and settings), or None if it has none."""
        return read_json_object(self._marker(stage)) if self._marker(stage).exists() else None

    def read_started(self, stage: str) -> dict | None:
        """The record of a stage that started and has not completed (interrupted, or running)."""
        return read_json_object(self._started(stage)) if self._started(stage).exists() else None

    def write_started(self, stage: str, record: dict) -> None:
        write_json_atomic(self._started(stage), record)

    def write_record(self, stage: str, record: dict, stats: dict) -> None:
        """Write the stage's stats, then its record: the record is the last thing written."""
        write_json_atomic(self.stats / f"{stage}.json", stats)
        write_json_atomic(self._marker(stage), record)
        self._started(stage).unlink(missing_ok=True)

    def mark_complete(self, stage: str, stats: dict) -> None:
        """A completion record without a fingerprint (always reported stale by `lmforge status`)."""
        self.write_record(stage, {"stage": stage}, stats)

    def clear_marker(self, stage: str) -> None:
        self._marker(stage).unlink(missing_ok=True)

    def read_stats(self, stage: str) -> dict | None:
        path = self.stats / f"{stage}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def reset_dir(self, path: Path) -> Path:
        """Empty a stage's output folder before a fresh (non-resumed) run of that stage."""
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


def read_json_object(path: Path) -> dict:
    """A JSON object from a file; ``{}`` when it is missing, unreadable or not an object (a marker
    from before records, the word ``complete``, reads as ``{}``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


TEMP_NAME = re.compile(r"^\..+\.(\d+\.)?tmp$")


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders (``.NAME.PID.tmp``) that a killed stage left.

    Called only by a process that holds the run's lock, so no live writer owns any of them.
    """
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if TEMP_NAME.match(name):
                path = Path(dirpath) / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        dirnames[:] = [d for d in dirnames if not TEMP_NAME.match(d)]
    return removed
