"""The runs under the served folder: safe name lookup, stage states, summaries, metrics tails.

Only names listed here resolve to a directory, and every path the app opens is built from such a
directory and fixed parts, so a request cannot reach outside the runs folder.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A metrics request reads at most this much of the file; the page asks again for the rest.
METRICS_CHUNK = 4 << 20


class NotFound(LmforgeError):
    """A run, file or record that is not there (HTTP 404)."""


class Unreadable(LmforgeError):
    """A run's file that is there but not readable as its format (HTTP 409): the message says which
    file and the command that makes it again."""


@dataclass(frozen=True)
class ServedRun(RunDir):
    """A run directory of the served folder whose files are read only when they resolve inside that
    folder: a symlink in the run that points elsewhere is refused, not followed."""

    fence: Path | None = None

    def inside(self, path: Path) -> Path:
        if self.fence is not None and path.exists() and not path.resolve().is_relative_to(self.fence):
            raise NotFound(f"{self.root.name}/{path.relative_to(self.root)} points outside the runs folder; it is not read")
        return path

    def files(self, folder: Path, *patterns: str) -> list[Path]:
        """The files of ``folder`` matching ``patterns``, in name order, leaving out any that resolve
        outside the runs folder."""
        if not self.inside(folder).is_dir():
            return []
        found = sorted(p for pattern in patterns for p in folder.glob(pattern))
        return [p for p in found if self.fence is None or p.resolve().is_relative_to(self.fence)]

    def remake(self, stage: str) -> str:
        return f"`lmforge run {self.config} --force {stage}`"

    def read_stats(self, stage: str) -> dict | None:
        """stats/<stage>.json as a JSON object; None when absent; Unreadable when it is not one."""
        path = self.inside(self.stats / f"{stage}.json")
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise Unreadable(f"{self.root.name}/stats/{stage}.json is not readable JSON ({str(exc)[:80]}); "
                             f"make it again with {self.remake(stage)}") from None
        if not isinstance(data, dict):
            raise Unreadable(f"{self.root.name}/stats/{stage}.json is not a JSON object; make it again with {self.remake(stage)}")
        return data


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.toml").is_file() or (path / ".complete").is_dir())


class RunsFolder:
    """The runs the app serves: the run directories under ``root``, or ``root`` itself when it is one."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise LmforgeError(f"{root}: no such folder (or not a folder); give a runs folder (e.g. runs) or a run (e.g. runs/demo)")
        self.runs()  # a folder that cannot be listed is refused now, not at the first request

    def runs(self) -> dict[str, Path]:
        if is_run_dir(self.root):
            return {self.root.name: self.root}
        found = {}
        try:
            listed = sorted(self.root.iterdir())
        except OSError as exc:
            raise LmforgeError(f"{self.root}: the runs folder cannot be read ({exc.strerror})") from None
        for path in listed:
            if _NAME.fullmatch(path.name) and is_run_dir(path) and path.resolve().is_relative_to(self.root):
                found[path.name] = path
        return found

    def get(self, name: str) -> ServedRun:
        """The run called ``name``; anything else (``..``, ``/etc``, a file) is not found."""
        path = self.runs().get(name) if _NAME.fullmatch(name or "") else None
        if path is None:
            shown = name[:80].encode("utf-8", "backslashreplace").decode()  # a lone surrogate is shown, not raised
            raise NotFound(f"no run named {shown!r} here; the runs are: {', '.join(self.runs()) or 'none yet'}")
        return ServedRun(path, self.root)


def stage_states(rd: RunDir) -> list[dict]:
    """Each stage as `lmforge status` reports it: complete, stale (and why), missing, running or unused."""
    from lmforge.status import run_status

    return [asdict(s) for s in run_status(rd.root)]


def read_config(rd: RunDir) -> dict:
    """config.toml as plain data (parsed, never executed); {} when absent or unreadable."""
    if isinstance(rd, ServedRun) and rd.fence is not None and rd.config.exists() \
            and not rd.config.resolve().is_relative_to(rd.fence):
        return {}  # a link out of the runs folder is not read
    try:
        return tomllib.loads(rd.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not TOML, or not UTF-8
        return {}


def run_summary(name: str, rd: ServedRun) -> dict:
    """A run's line on the runs page; a stats file that cannot be read leaves its figures empty and
    is named in ``problems`` (one bad file does not hide the other runs)."""
    problems, stats = [], {}
    for stage in ("crawl", "clean", "tokenize", "train"):
        try:
            stats[stage] = rd.read_stats(stage) or {}
        except LmforgeError as exc:
            stats[stage] = {}
            problems.append(str(exc))
    crawl, clean, tokens, train = (stats[s] for s in ("crawl", "clean", "tokenize", "train"))
    try:
        val = last_val(rd)
    except LmforgeError as exc:
        val = {}
        problems.append(str(exc))
    return {"name": name, "stages": stage_states(rd), "pages": _count(crawl.get("fetched")),
            "records": _count(clean.get("records")), "docs": _count(clean.get("docs")),
            "tokens": _count(tokens.get("tokens")), "params": _count(train.get("params")),
            "steps": _count(train.get("steps")), "val_loss": _number(val.get("val_loss")),
            "val_bpb": _number(val.get("val_bpb")), "problems": problems}


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _json_line(line: bytes) -> dict | None:
    """One line of metrics.jsonl as an object, NaN and infinities as null (JSON has no such numbers);
    None for a line that is not a JSON object."""
    try:
        row = json.loads(line, parse_constant=lambda name: None)
    except ValueError:  # not JSON, or not UTF-8
        return None
    return row if isinstance(row, dict) else None


def last_val(rd: ServedRun) -> dict:
    """The last validation line of metrics.jsonl (the file may be growing: a cut line is skipped)."""
    if not rd.inside(rd.metrics).is_file():
        return {}
    found = {}
    with open(rd.metrics, "rb") as f:
        for line in f:
            if b'"val"' in line and line.endswith(b"\n"):
                found = _json_line(line) or found
    return found


def clean_stats(rd: ServedRun) -> dict:
    """stats/clean.json, checked for the shape the funnel reads: ``steps`` maps each step to its counts."""
    stats = rd.read_stats("clean")
    if stats is None:
        raise NotFound(f"{rd.root.name}: no stats/clean.json yet; make it with `lmforge run {rd.config} --until clean`")
    if not _steps_shaped(stats.get("steps") or {}) or not isinstance(stats.get("sources") or {}, (dict, list)):
        raise Unreadable(f"{rd.root.name}/stats/clean.json does not have the clean stage's counts; "
                         f"make it again with {rd.remake('clean')}")
    return stats


def _steps_shaped(steps) -> bool:
    """Each step's in, out and dropped_* are counts (other keys, such as seconds, are not read)."""
    return isinstance(steps, dict) and all(
        isinstance(counts, dict) and all(_count(v) is not None for k, v in counts.items()
                                         if k in ("in", "out") or k.startswith("dropped_"))
        for counts in steps.values())


def funnel(rd: ServedRun) -> dict:
    """The clean stage's funnel from stats/clean.json: records in, per step in/out/dropped by reason, kept."""
    stats = clean_stats(rd)
    steps = []
    for name, counts in (stats.get("steps") or {}).items():
        dropped = {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")}
        steps.append({"step": name, "in": counts.get("in"), "out": counts.get("out"), "dropped": dropped,
                      "seconds": counts.get("seconds")})
    return {"records": _count(stats.get("records")), "docs": _count(stats.get("docs")), "steps": steps,
            "sources": sorted(str(s) for s in stats.get("sources") or {})}


def metrics_tail(rd: RunDir, offset: int) -> dict:
    """The complete lines of metrics.jsonl from byte ``offset`` on, and where to continue.

    Only lines ending in a newline are returned, so a line being written is read next time; a file
    shorter than ``offset`` (training restarted) is read again from the start (``reset``).
    """
    rows, reset, path = [], False, rd.inside(rd.metrics)
    size = path.stat().st_size if path.is_file() else 0
    if offset > size:
        offset, reset = 0, True
    if size > offset:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(METRICS_CHUNK)
        end = chunk.rfind(b"\n") + 1
        rows = [row for row in map(_json_line, chunk[:end].splitlines()) if row is not None]
        offset += end
    return {"rows": rows, "offset": offset, "reset": reset, "size": size}


def training_plan(rd: RunDir) -> dict:
    cfg = read_config(rd)
    train, model = cfg.get("train"), cfg.get("model")
    train, model = (t if isinstance(t, dict) else {} for t in (train, model))
    return {"max_steps": _count(train.get("max_steps")), "eval_every": _count(train.get("eval_every")),
            "seq_len": _count(model.get("seq_len"))}


def eta_seconds(train_rows: list[dict], max_steps: int | None) -> float | None:
    """Steps left times the median step time of the last 20 logged steps; None when unknown."""
    if not train_rows or not max_steps:
        return None
    recent = [r["ms"] for r in train_rows[-20:] if _number(r.get("ms")) is not None]
    step = _count(train_rows[-1].get("step"))
    if not recent or step is None or _count(max_steps) is None:
        return None
    return max(0, max_steps - step) * statistics.median(recent) / 1000
