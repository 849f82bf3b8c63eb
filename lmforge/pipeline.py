"""`lmforge run CONFIG`: the stages in order, each skipped when its completion marker exists.

Each stage is a function ``run_stage(cfg, rundir) -> stats`` in its own package; it writes its
outputs under the run directory and returns its counters. The marker is written after the
stats, so an interrupted stage is simply run again.
"""

from __future__ import annotations

import importlib
import shutil
import time
from pathlib import Path
from typing import Callable

from lmforge.config import RunConfig, to_toml
from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir, write_text_atomic

STAGES: dict[str, str] = {
    "crawl": "lmforge.collect.crawl",
    "clean": "lmforge.clean.pipeline",
    "tokenizer": "lmforge.tokenizer.train",
    "tokenize": "lmforge.tokenizer.tokenize",
    "train": "lmforge.train.loop",
    "sample": "lmforge.sample.stage",
    "report": "lmforge.report",
}


# Stages that resume from their own partial outputs: a forced (fresh) run must remove them first,
# or it would resume a finished crawl or training and do nothing.
RESUMABLE_OUTPUTS: dict[str, Callable[[RunDir], list[Path]]] = {
    "crawl": lambda rd: [rd.crawl],
    "clean": lambda rd: [rd.clean_parts],
    "train": lambda rd: [rd.checkpoints, rd.metrics],
}


def stage_function(stage: str) -> Callable[[RunConfig, RunDir], dict]:
    return importlib.import_module(STAGES[stage]).run_stage


def check_stage_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise LmforgeError(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGES)}")


def run_pipeline(cfg: RunConfig, force: list[str] = (), only: list[str] = (), until: str | None = None,
                 log: Callable[[str], None] = print) -> RunDir:
    """Run the stages of ``cfg``; forcing a stage reruns it and every stage after it."""
    check_stage_names([*force, *only, *([until] if until else [])])
    rd = RunDir(cfg.run_path)
    rd.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(rd.config, to_toml(cfg))
    names = list(STAGES)
    first_forced = min((names.index(s) for s in force), default=len(names))
    # Outputs of later stages were made from what is about to be rebuilt: they are stale too,
    # even when this invocation does not run them (--only).
    for stage in names[first_forced:]:
        rd.clear_marker(stage)
        _remove_resumable_outputs(stage, rd)
    last = names.index(until) if until else len(names) - 1
    for stage in names[: last + 1]:
        if only and stage not in only:
            continue
        if rd.is_complete(stage):
            log(f"[{stage}] complete, skipped (use --force {stage} to rerun)")
            continue
        _run_one(stage, cfg, rd, log)
    return rd


def _remove_resumable_outputs(stage: str, rd: RunDir) -> None:
    for path in RESUMABLE_OUTPUTS.get(stage, lambda _: [])(rd):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _run_one(stage: str, cfg: RunConfig, rd: RunDir, log: Callable[[str], None]) -> None:
    log(f"[{stage}] start")
    t0 = time.time()
    stats = stage_function(stage)(cfg, rd) or {}
    stats["seconds"] = round(time.time() - t0, 2)
    rd.mark_complete(stage, stats)
    log(f"[{stage}] done in {stats['seconds']:.1f}s")
