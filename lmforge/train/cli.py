"""`lmforge train CONFIG`: the train stage alone (also under torchrun, where only rank 0 writes)."""

from __future__ import annotations

import os


def register(subparsers) -> None:
    from lmforge.cli import add_override_args

    p = subparsers.add_parser("train", help="train the model of a config on its token shards (resumes)",
                              description="Train (or resume) the model of CONFIG on the run's token shards. "
                              "Multi-GPU: torchrun --nproc_per_node=N -m lmforge train CONFIG")
    p.add_argument("config", help="TOML config, e.g. configs/demo.toml")
    add_override_args(p)
    p.add_argument("--force", action="store_true", help="train afresh: remove the run's checkpoints and metrics")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from lmforge.config import load_config
    from lmforge.pipeline import run_stages

    cfg = load_config(args.config, args.overrides)
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        run_stages(cfg, only=["train"], force=["train"] if args.force else [])
        return 0
    return _train_distributed(cfg, args.force)


def _train_distributed(cfg, force: bool) -> int:
    """Under torchrun: rank 0 takes the lock, checks the fingerprint and prepares; every rank learns
    its decision (or its error) through the process group before any of them trains."""
    import time

    from lmforge.rundir import RunDir
    from lmforge.runlock import RunLock
    from lmforge.train.dist import close_distributed, init_distributed

    env = init_distributed(cfg.train.device)
    rd = RunDir(cfg.run_path)
    lock = RunLock(rd.root) if env.is_main else None
    try:
        decision, record = _agree_on_decision(cfg, rd, force, lock)
        if decision.action == "skip":
            print("[train] complete, skipped (use --force to rerun)") if env.is_main else None
            return 0
        from lmforge.pipeline import finish_stage
        from lmforge.train.loop import train

        t0 = time.time()
        stats = train(cfg, rd)
        if env.is_main:
            finish_stage("train", cfg, rd, record, stats, t0, print)
        return 0
    finally:
        close_distributed(env)
        if lock is not None:
            lock.release()


def _agree_on_decision(cfg, rd, force: bool, lock):
    import torch.distributed as dist

    from lmforge.errors import LmforgeError
    from lmforge.pipeline import announce, begin_stage, decide
    from lmforge.rundir import remove_stale_temps

    box: list = [None]
    if lock is not None:
        try:
            lock.acquire()
            lock.set_stage("train")
            remove_stale_temps(rd.root)
            decision = decide("train", cfg, rd, force)
            announce("train", decision, 0, print)
            record = begin_stage("train", cfg, rd, decision, print) if decision.action != "skip" else None
            box[0] = ("ok", decision, record)
        except LmforgeError as exc:
            box[0] = ("error", str(exc), None)
    dist.broadcast_object_list(box, src=0)
    kind, decision, record = box[0]
    if kind == "error":
        raise LmforgeError(decision)
    return decision, record
