"""The runs under the served folder: safe name lookup, stage states, summaries, metrics tails.

Only names listed here resolve to a directory, and every path the app opens is built from such a
directory and fixed parts, so a request cannot reach outside the runs folder.
"""

from __future__ import annotations

import json
import re
import statistics
import tomllib
from dataclasses import asdict
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A metrics request reads at most this much of the file; the page asks again for the rest.
METRICS_CHUNK = 4 << 20


class NotFound(LmforgeError):
    """A run, file or record that is not there (HTTP 404)."""


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.toml").is_file() or (path / ".complete").is_dir())


class RunsFolder:
    """The runs the app serves: the run directories under ``root``, or ``root`` itself when it is one."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise LmforgeError(f"{root}: no such folder; give a runs folder (e.g. runs) or a run (e.g. runs/demo)")

    def runs(self) -> dict[str, Path]:
        if is_run_dir(self.root):
            return {self.root.name: self.root}
        found = {}
        for path in sorted(self.root.iterdir()):
            if _NAME.fullmatch(path.name) and is_run_dir(path) and path.resolve().is_relative_to(self.root):
                found[path.name] = path
        return found

    def get(self, name: str) -> RunDir:
        """The run called ``name``; anything else (``..``, ``/etc``, a file) is not found."""
        path = self.runs().get(name) if _NAME.fullmatch(name or "") else None
        if path is None:
            raise NotFound(f"no run named {name!r} here; the runs are: {', '.join(self.runs()) or 'none yet'}")
        return RunDir(path)


def stage_states(rd: RunDir) -> list[dict]:
    """Each stage as `lmforge status` reports it: complete, stale (and why), missing, running or unused."""
    from lmforge.status import run_status

    return [asdict(s) for s in run_status(rd.root)]


def read_config(rd: RunDir) -> dict:
    """config.toml as plain data (parsed, never executed); {} when absent or unreadable."""
    try:
        return tomllib.loads(rd.config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def run_summary(name: str, rd: RunDir) -> dict:
    crawl, clean = rd.read_stats("crawl") or {}, rd.read_stats("clean") or {}
    tokens, train = rd.read_stats("tokenize") or {}, rd.read_stats("train") or {}
    val = last_val(rd)
    return {"name": name, "stages": stage_states(rd), "pages": crawl.get("fetched"), "records": clean.get("records"),
            "docs": clean.get("docs"), "tokens": tokens.get("tokens"), "params": train.get("params"),
            "steps": train.get("steps"), "val_loss": val.get("val_loss"), "val_bpb": val.get("val_bpb")}


def last_val(rd: RunDir) -> dict:
    """The last validation line of metrics.jsonl (the file may be growing: a cut line is skipped)."""
    if not rd.metrics.is_file():
        return {}
    found = {}
    with open(rd.metrics, "rb") as f:
        for line in f:
            if b'"val"' in line and line.endswith(b"\n"):
                try:
                    found = json.loads(line)
                except json.JSONDecodeError:
                    continue
    return found


def funnel(rd: RunDir) -> dict:
    """The clean stage's funnel from stats/clean.json: records in, per step in/out/dropped by reason, kept."""
    stats = rd.read_stats("clean")
    if stats is None:
        raise NotFound(f"{rd.root.name}: no stats/clean.json yet; make it with `lmforge run {rd.config} --until clean`")
    steps = []
    for name, counts in (stats.get("steps") or {}).items():
        dropped = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
        steps.append({"step": name, "in": counts.get("in"), "out": counts.get("out"), "dropped": dropped,
                      "seconds": counts.get("seconds")})
    return {"records": stats.get("records"), "docs": stats.get("docs"), "steps": steps,
            "sources": sorted(stats.get("sources") or {})}


def metrics_tail(rd: RunDir, offset: int) -> dict:
    """The complete lines of metrics.jsonl from byte ``offset`` on, and where to continue.

    Only lines ending in a newline are returned, so a line being written is read next time; a file
    shorter than ``offset`` (training restarted) is read again from the start (``reset``).
    """
    rows, reset, path = [], False, rd.metrics
    size = path.stat().st_size if path.is_file() else 0
    if offset > size:
        offset, reset = 0, True
    if size > offset:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(METRICS_CHUNK)
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        offset += end
    return {"rows": rows, "offset": offset, "reset": reset, "size": size}


def training_plan(rd: RunDir) -> dict:
    cfg = read_config(rd)
    train, model = cfg.get("train") or {}, cfg.get("model") or {}
    return {"max_steps": train.get("max_steps"), "eval_every": train.get("eval_every"), "seq_len": model.get("seq_len")}


def eta_seconds(train_rows: list[dict], max_steps: int | None) -> float | None:
    """Steps left times the median step time of the last 20 logged steps; None when unknown."""
    if not train_rows or not max_steps:
        return None
    recent = [r["ms"] for r in train_rows[-20:] if isinstance(r.get("ms"), (int, float))]
    if not recent:
        return None
    return max(0, max_steps - int(train_rows[-1].get("step", 0))) * statistics.median(recent) / 1000
