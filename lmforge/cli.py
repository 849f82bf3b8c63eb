"""The `lmforge` command. Each stage package registers its own subcommands; imports stay lazy
so that `lmforge --help` is instant."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lmforge.errors import LmforgeError

# Packages whose cli module has ``register(subparsers)``.
STAGE_CLIS = ("lmforge.collect.cli", "lmforge.clean.cli", "lmforge.tokenizer.cli", "lmforge.train.cli",
              "lmforge.sample.cli", "lmforge.serve.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="From raw web pages to a base language model.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _register_run(subparsers)
    for name in STAGE_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    _register_report(subparsers)
    _register_status(subparsers)
    return parser


def _register_run(subparsers) -> None:
    p = subparsers.add_parser("run", help="run every stage of a config (skips completed stages)")
    p.add_argument("config", help="TOML config, e.g. configs/demo.toml")
    add_override_args(p)
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="rerun STAGE and every stage after it (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="STAGE", help="run only STAGE (repeatable)")
    p.add_argument("--until", metavar="STAGE", help="stop after STAGE")
    p.set_defaults(func=_cmd_run)


def add_override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.max_steps=50 (repeatable)")


def _cmd_run(args) -> int:
    from lmforge.config import load_config
    from lmforge.pipeline import run_stages

    cfg = load_config(args.config, args.overrides)
    rd = run_stages(cfg, force=args.force, only=args.only, until=args.until)
    _print_summary(rd)
    return 0


def _print_summary(rd) -> None:
    """End a run with what a person came for: where the report is and what the model writes."""
    import json

    if rd.samples.exists() and rd.is_complete("sample"):  # not the samples of a model an upstream rerun replaced
        data = json.loads(rd.samples.read_text(encoding="utf-8"))
        prompts = data.get("prompts", [])
        # each prompt's first continuation, then each one's second...: every prompt shows
        texts = [(p["prompt"], p["samples"][i]) for i in range(max((len(p.get("samples", [])) for p in prompts), default=0))
                 for p in prompts if i < len(p.get("samples", []))]
        print(f"\nsampled continuations ({min(3, len(texts))} of {len(texts)}; all in {rd.samples}):")
        for i, (prompt, text) in enumerate(texts[:3], 1):
            print(f"--- {i} ---\n{prompt}{text}")
    if rd.report.exists() and rd.is_complete("report"):
        print(f"\nreport: {rd.report}")


def _register_report(subparsers) -> None:
    p = subparsers.add_parser("report", help="write report.md and plots for a run directory")
    p.add_argument("run_dir", help="e.g. runs/demo")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from lmforge.report import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


def _register_status(subparsers) -> None:
    p = subparsers.add_parser("status", help="each stage of a run: complete, stale (and why), missing or running",
                              description="Show each stage of RUN as complete / stale (and why) / missing / running "
                              "(PID). RUN is a run directory (compared with the config it last ran with) or a "
                              "config file (what `lmforge run CONFIG` would redo).")
    p.add_argument("run", help="a run directory (runs/demo) or a TOML config")
    add_override_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=_cmd_status)


def _cmd_status(args) -> int:
    import json
    from pathlib import Path

    from lmforge.config import load_config
    from lmforge.runlock import holder
    from lmforge.status import format_status, run_status

    target = Path(args.run)
    if target.is_dir():
        root, rows = target, run_status(target)
    elif target.is_file():
        cfg = load_config(target, args.overrides)
        root, rows = cfg.run_path, run_status(cfg.run_path, cfg, str(target))
    else:
        raise LmforgeError(f"{target}: no such run directory or config file (runs are under runs/)")
    if args.json:
        print(json.dumps({"run": str(root), "stages": [r.to_dict() for r in rows]}, ensure_ascii=False))
    else:
        print(format_status(rows, root, holder(root)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except LmforgeError as exc:
        print(f"lmforge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lmforge: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
