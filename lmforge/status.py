"""`lmforge status RUN`: each stage of a run as complete, stale (and why), missing or running.

It only reads the run directory (never takes its lock): the records under ``.complete/``, the
start records of interrupted stages under ``.started/``, the lock's holder, and the config the
run last ran with (or another config, to see what a rerun with it would redo).
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from lmforge.config import RunConfig, load_config
from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir
from lmforge.runlock import holder


@dataclass
class StageStatus:
    stage: str
    state: str
    """complete, stale, missing, running or unused (a crawl stage of a run that reads files)."""
    reason: str = ""
    pid: int | None = None
    command: str = ""
    """The command that makes or refreshes the stage."""

    def to_dict(self) -> dict:
        return asdict(self)


def run_status(run_root: str | Path, cfg: RunConfig | None = None, config_path: str | None = None) -> list[StageStatus]:
    """The state of every stage of the run in ``run_root``, compared with ``cfg`` (default: its config.toml)."""
    from lmforge.pipeline import STAGES, is_needed

    rd = RunDir(Path(run_root))
    if cfg is None:
        cfg, config_path = _run_config(rd)
    command = f"lmforge run {shlex.quote(str(config_path or rd.config))}"
    lock = holder(rd.root) or {}
    out: list[StageStatus] = []
    upstream_bad = ""
    for stage in STAGES:
        if cfg is not None and not is_needed(stage, cfg):
            out.append(StageStatus(stage, "unused", "the clean stage reads [[clean.inputs]]"))
            continue
        st = _stage_status(stage, rd, cfg, upstream_bad, lock, command)
        if st.state in ("stale", "missing", "running") and not upstream_bad:
            upstream_bad = f"{stage} is {st.state}"
        out.append(st)
    return out


def _run_config(rd: RunDir) -> tuple[RunConfig | None, str | None]:
    if not rd.config.exists():
        return None, None
    try:
        return load_config(rd.config), str(rd.config)
    except LmforgeError:
        return None, str(rd.config)


def _stage_status(stage: str, rd: RunDir, cfg, upstream_bad: str, lock: dict, command: str) -> StageStatus:
    from lmforge.pipeline import expected_record, staleness

    if lock.get("stage") == stage:
        return StageStatus(stage, "running", lock.get("command", ""), lock.get("pid"))
    record = rd.read_record(stage)
    if record is None:
        why = "interrupted; rerun to resume" if rd.read_started(stage) is not None else ""
        return StageStatus(stage, "missing", why, command=f"{command} --until {stage}")
    if cfg is None:
        return StageStatus(stage, "complete", "(the run has no readable config.toml to compare with)")
    why = staleness(stage, record, expected_record(stage, cfg, rd)) or (f"{upstream_bad}" if upstream_bad else "")
    if why and stage == "train" and "model." in why and any(rd.checkpoints.glob("step_*")):
        # a rerun refuses to resume another model's checkpoints: say the command that starts afresh
        return StageStatus(stage, "stale", f"{why} (a new model: add --force train)",
                           command=f"{command} --force train")
    if why:
        return StageStatus(stage, "stale", why, command=f"{command} --until {stage}")
    return StageStatus(stage, "complete")


def format_status(rows: list[StageStatus], run_root: str | Path, lock: dict | None = None) -> str:
    lines = [f"{run_root}" + (f"  (in use by PID {lock.get('pid')}: {lock.get('command', '')})" if lock else "")]
    width = max(len(r.stage) for r in rows)
    for r in rows:
        state = f"running (PID {r.pid})" if r.state == "running" else r.state
        detail = f": {r.reason}" if r.reason else ""
        lines.append(f"  {r.stage:<{width}}  {state}{detail}")
    todo = next((r.command for r in rows if r.state in ("stale", "missing")), "")
    if todo:
        lines.append(f"to bring it up to date: {todo.split(' --until', 1)[0]}")
    return "\n".join(lines)
