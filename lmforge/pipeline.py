"""The stage runner: every command that runs a stage goes through :func:`run_stages`.

For each stage in order it checks the stage's fingerprint against its completion record (see
:mod:`lmforge.fingerprint`), takes the run directory's lock, runs the stage, validates its
outputs, writes the record (stats first, record last) and invalidates the later stages.

Each stage is a function ``run_stage(cfg, rundir) -> stats`` in its own package; it writes its
outputs under the run directory and returns its counters.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lmforge.config import RunConfig, to_toml
from lmforge.errors import LmforgeError
from lmforge.fingerprint import describe_changes, digest, file_identities, result_settings
from lmforge.rundir import RunDir, remove_stale_temps, write_text_atomic
from lmforge.runlock import RunLock


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    sections: tuple[str, ...]
    """Config sections whose result settings decide the outputs (see NOT_IN_FINGERPRINT)."""
    seed: bool = False
    """The run's seed decides the outputs too."""
    version: int = 1
    """Output format version: bump it when the stage writes something new from the same inputs."""
    keys: tuple[str, ...] = ()
    """When set, only these settings of its sections count (stages that share a section)."""
    skip: tuple[str, ...] = ()
    """Settings of its sections that only another stage reads."""


STAGE_LIST = (
    Stage("crawl", "lmforge.collect.crawl", ("collect",)),
    Stage("clean", "lmforge.clean.pipeline", ("clean",)),
    Stage("tokenizer", "lmforge.tokenizer.train", ("tokenizer",), seed=True,
          skip=("tokenizer.val_fraction", "tokenizer.shard_tokens")),
    Stage("tokenize", "lmforge.tokenizer.tokenize", ("tokenizer",), seed=True,
          keys=("tokenizer.val_fraction", "tokenizer.shard_tokens")),
    Stage("train", "lmforge.train.loop", ("model", "train"), seed=True),
    Stage("sample", "lmforge.sample.stage", ("sample",)),
    Stage("report", "lmforge.report", ()),
)
STAGES: dict[str, Stage] = {s.name: s for s in STAGE_LIST}

# Outputs a fresh (re)run of a stage removes first; the others are replaced by the stage itself.
# Without this a forced crawl or training would resume its own finished work and do nothing.
FRESH_START: dict[str, Callable[[RunDir], list[Path]]] = {
    "crawl": lambda rd: [rd.crawl],
    "clean": lambda rd: [rd.clean_parts],
    "train": lambda rd: [rd.checkpoints, rd.metrics],
}


def stage_function(stage: str) -> Callable[[RunConfig, RunDir], dict]:
    return importlib.import_module(STAGES[stage].module).run_stage


def check_stage_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise LmforgeError(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGES)}")


# --- fingerprints -----------------------------------------------------------------------------

def stage_settings(stage: str, cfg: RunConfig) -> dict:
    spec = STAGES[stage]
    settings: dict = {}
    for section in spec.sections:
        settings.update(result_settings(getattr(cfg, section), section))
    settings = {k: v for k, v in settings.items() if (not spec.keys or k in spec.keys) and k not in spec.skip}
    if spec.seed:
        settings["seed"] = cfg.seed
    return settings


def external_inputs(stage: str, cfg: RunConfig) -> list:
    """Identities of files from outside the run that the stage reads."""
    if stage == "clean":
        return file_identities([spec.path for spec in cfg.clean.inputs], cfg.hash_inputs)
    if stage == "train" and getattr(cfg.train, "init_from", ""):  # read with ~ expanded: so is it here
        return file_identities([str(Path(cfg.train.init_from).expanduser())], cfg.hash_inputs)
    return []


def upstream_of(stage: str, cfg: RunConfig) -> str | None:
    names = list(STAGES)
    i = names.index(stage)
    return names[i - 1] if i and is_needed(names[i - 1], cfg) else None


def is_needed(stage: str, cfg: RunConfig) -> bool:
    """A run whose clean stage reads [[clean.inputs]] and that has no seeds has no crawl stage."""
    if stage == "crawl":
        c = cfg.collect
        return bool(c.seeds or c.seeds_file or c.serve_demo or c.local_sites) or not cfg.clean.inputs
    return True


def expected_record(stage: str, cfg: RunConfig, rd: RunDir) -> dict:
    """The record the stage would write now: its settings, upstream and inputs, and their hash."""
    up = upstream_of(stage, cfg)
    up_record = rd.read_record(up) if up else None
    upstream = up_record.get("fingerprint") if up_record else None
    settings, inputs, version = stage_settings(stage, cfg), external_inputs(stage, cfg), STAGES[stage].version
    return {"stage": stage, "fingerprint": digest(settings, upstream, inputs, version), "upstream": upstream,
            "upstream_stage": up, "settings": settings, "inputs": inputs, "version": version}


def staleness(stage: str, record: dict | None, expected: dict) -> str:
    """Why ``record`` does not describe what the stage would make now ("" when it does)."""
    if record is None:
        return "missing"
    if "fingerprint" not in record:
        return "made before stage fingerprints were recorded"
    if record["fingerprint"] == expected["fingerprint"]:
        return ""
    changes = describe_changes(record.get("settings", {}), expected["settings"])
    if changes:
        return ", ".join(changes)
    if record.get("upstream") != expected["upstream"]:
        return f"{expected.get('upstream_stage') or 'its input stage'} changed since it ran"
    if record.get("inputs") != expected["inputs"]:
        return "its input files changed"
    return f"output format version {record.get('version')} -> {expected['version']}"


# --- running ----------------------------------------------------------------------------------

@dataclass
class Decision:
    action: str  # "skip", "run" (fresh) or "resume" (the stage continues its own partial outputs)
    reason: str = ""


def decide(stage: str, cfg: RunConfig, rd: RunDir, forced: bool) -> Decision:
    """Skip a complete stage whose fingerprint matches; else say how it runs, and why.

    An interrupted stage (a start record, no completion record) resumes its own partial outputs
    when it was started with the same fingerprint; with another one it is stale like a complete one.
    """
    if forced:
        return Decision("run", "forced")
    record, expected = rd.read_record(stage), expected_record(stage, cfg, rd)
    if record is not None and not staleness(stage, record, expected):
        return Decision("skip")
    basis = record or rd.read_started(stage)
    why = staleness(stage, basis, expected) if basis is not None else ""
    if not why or why == "missing":
        return Decision("resume" if _has_partial_outputs(stage, rd) else "run", "")
    if stage == "crawl":
        # a crawl continues from its journal: new limits or seeds extend it (--force starts afresh)
        return Decision("resume", why)
    if stage == "train" and "fingerprint" in basis:
        return _train_decision(basis, expected, rd, why)
    return Decision("run", why)


def _has_partial_outputs(stage: str, rd: RunDir) -> bool:
    return any(p.exists() for p in FRESH_START.get(stage, lambda _: [])(rd))


def _train_decision(record: dict, expected: dict, rd: RunDir, why: str) -> Decision:
    """More steps continue a training; a changed model shape is refused; anything else starts afresh."""
    old, new = record.get("settings", {}), expected["settings"]
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    has_checkpoints = rd.checkpoints.exists() and any(rd.checkpoints.glob("step_*"))
    same_upstream = record.get("upstream") == expected["upstream"] and record.get("inputs") == expected["inputs"]
    if has_checkpoints and same_upstream and changed == {"train.max_steps"} and new["train.max_steps"] > old["train.max_steps"]:
        return Decision("resume", why)
    shape = sorted(k for k in changed if k.startswith("model."))
    if has_checkpoints and shape:
        raise LmforgeError(f"train: {why} changes the shape of the model in {rd.checkpoints}; "
                           f"to train a new model from scratch, rerun with --force train "
                           f"(its checkpoints and metrics are removed)")
    return Decision("run", why)


def run_stages(cfg: RunConfig, force: list[str] = (), only: list[str] = (), until: str | None = None,
               log: Callable[[str], None] = print) -> RunDir:
    """Run the stages of ``cfg`` that are missing or stale; forcing a stage reruns it and every later one."""
    check_stage_names([*force, *only, *([until] if until else [])])
    rd = RunDir(cfg.run_path)
    names = list(STAGES)
    last = names.index(until) if until else len(names) - 1
    selected = [s for s in names[: last + 1] if not only or s in only]
    first_forced = min((names.index(s) for s in force), default=len(names))
    with RunLock(rd.root) as lock:
        remove_stale_temps(rd.root)
        for i, stage in enumerate(selected):
            if not is_needed(stage, cfg):
                log(f"[{stage}] not needed: no seeds, and the clean stage reads [[clean.inputs]]")
                continue
            decision = decide(stage, cfg, rd, names.index(stage) >= first_forced)
            if decision.action == "skip":
                log(f"[{stage}] complete, skipped (use --force {stage} to rerun)")
                continue
            announce(stage, decision, len(selected) - i - 1, log)
            lock.set_stage(stage)
            run_one(stage, cfg, rd, decision, log)
        lock.set_stage("")
    return rd


def announce(stage: str, decision: Decision, later: int, log: Callable[[str], None]) -> None:
    if not decision.reason:
        return
    how = "resuming" if decision.action == "resume" else "rerunning"
    tail = f" and {later} later stage{'s' if later != 1 else ''}" if later else ""
    log(f"[{stage}] stale: {decision.reason}; {how} {stage}{tail}")


def run_one(stage: str, cfg: RunConfig, rd: RunDir, decision: Decision, log: Callable[[str], None] = print) -> dict:
    """Run one stage (the lock held by the caller), validate its outputs and write its record."""
    record = begin_stage(stage, cfg, rd, decision, log)
    t0 = time.time()
    stats = stage_function(stage)(cfg, rd) or {}
    return finish_stage(stage, cfg, rd, record, stats, t0, log)


def begin_stage(stage: str, cfg: RunConfig, rd: RunDir, decision: Decision, log: Callable[[str], None]) -> dict:
    """Invalidate the stage and the later ones, clear a fresh run's old outputs, record the start."""
    if stage == "train" and decision.action == "run":
        from lmforge.train.init import check_outside_run

        check_outside_run(cfg.train.init_from, rd)  # before the fresh start removes what it names
    invalidate_from(stage, rd)
    if decision.action == "run":
        remove_paths(FRESH_START.get(stage, lambda _: [])(rd))
    record = expected_record(stage, cfg, rd)
    rd.write_started(stage, record)
    write_text_atomic(rd.config, to_toml(cfg))
    log(f"[{stage}] start")
    return record


def finish_stage(stage: str, cfg: RunConfig, rd: RunDir, record: dict, stats: dict, t0: float,
                 log: Callable[[str], None]) -> dict:
    stats["seconds"] = round(time.time() - t0, 2)
    check_outputs(stage, rd, stats)
    rd.write_record(stage, {**record, "config": to_toml(cfg)}, stats)
    log(f"[{stage}] done in {stats['seconds']:.1f}s")
    return stats


def invalidate_from(stage: str, rd: RunDir) -> None:
    """The stage and every later one are no longer complete: their outputs are about to change."""
    names = list(STAGES)
    for later in names[names.index(stage):]:
        rd.clear_marker(later)


def remove_paths(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# --- outputs a complete stage must have -------------------------------------------------------

def check_outputs(stage: str, rd: RunDir, stats: dict) -> None:
    """Refuse to mark a stage complete whose outputs are missing or invalid."""
    problem = _output_problem(stage, rd, stats)
    if problem:
        raise LmforgeError(f"{stage}: {problem}; the stage is not marked complete")


def _output_problem(stage: str, rd: RunDir, stats: dict) -> str:
    if stage == "crawl" and stats.get("fetched", 0) + stats.get("previously_fetched", 0) == 0:
        errors = ", ".join(f"{k}: {v}" for k, v in (stats.get("errors") or {}).items())
        return "no page was fetched" + (f" ({errors})" if errors else "") + "; check the seeds and the network"
    if stage == "clean" and not any(rd.docs.glob("*.parquet")):
        return f"no documents were written to {rd.docs}"
    if stage == "tokenizer" and not (rd.tokenizer / "tokenizer.json").exists():
        return f"no tokenizer was written to {rd.tokenizer}"
    if stage == "tokenize":
        return _tokens_problem(rd)
    if stage == "train":
        return _train_output_problem(rd, stats)
    if stage == "sample" and not rd.samples.exists():
        return f"{rd.samples} was not written"
    if stage == "report" and not rd.report.exists():
        return f"{rd.report} was not written"
    return ""


def _tokens_problem(rd: RunDir) -> str:
    import json

    try:
        manifest = json.loads((rd.tokens / "manifest.json").read_text(encoding="utf-8"))
        train_tokens = sum(shard["tokens"] for source in manifest["sources"].values() for shard in source["train"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"no readable token manifest in {rd.tokens}"
    return "" if train_tokens > 0 else "the train split has no tokens"


def _train_output_problem(rd: RunDir, stats: dict) -> str:
    import math

    for key in ("final_loss", "train_loss", "val_loss", "loss"):
        value = stats.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return f"the {key.replace('_', ' ')} is {value}"
    if not any(rd.checkpoints.glob("step_*")):
        return f"no checkpoint was written to {rd.checkpoints}"
    return ""


def run_pipeline(cfg: RunConfig, force: list[str] = (), only: list[str] = (), until: str | None = None,
                 log: Callable[[str], None] = print) -> RunDir:
    """``lmforge run``: every stage of the config (an alias kept for the tests and scripts)."""
    return run_stages(cfg, force=force, only=only, until=until, log=log)

