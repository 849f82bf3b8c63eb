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
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import time

    from lmforge.config import load_config, to_toml
    from lmforge.rundir import RunDir, write_text_atomic
    from lmforge.train.loop import train

    cfg = load_config(args.config, args.overrides)
    rd = RunDir(cfg.run_path)
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        rd.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(rd.config, to_toml(cfg))
        rd.clear_marker("train")
    t0 = time.time()
    stats = train(cfg, rd)
    if main:
        stats["seconds"] = round(time.time() - t0, 2)
        rd.mark_complete("train", stats)
    return 0
