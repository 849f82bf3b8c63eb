"""`lmforge clean`: clean archives into Parquet documents without a full run config.

    lmforge clean --input 'data/*.warc.gz' --out runs/cc --languages en,ko --workers 0

writes ``runs/cc/docs/*.parquet``, ``runs/cc/rejects/*.parquet`` and ``runs/cc/stats/clean.json``.
In a config-driven run the same stage is ``lmforge run CONFIG --only clean``.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from lmforge.cli import add_override_args

    p = subparsers.add_parser("clean", help="extract, filter, deduplicate and mask raw records into Parquet docs",
                              description="Clean WARC/WET/HTML/JSONL/Parquet inputs into docs/*.parquet "
                                          "(and rejects/*.parquet with the reason of each drop).")
    p.add_argument("--input", action="append", required=True, metavar="GLOB",
                   help="a file, folder or glob (repeatable), e.g. 'crawl/*.warc.gz'")
    p.add_argument("--format", default="auto", help="auto, warc, wet, arc, html, jsonl, parquet (default: auto)")
    p.add_argument("--source", default="", help="source name for mixtures (default: the input's stem)")
    p.add_argument("--text-field", default="text", help="text column of JSONL/Parquet inputs")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (a run directory)")
    p.add_argument("--languages", default=None,
                   help="comma-separated ISO 639-1 codes to keep, e.g. en,ko; '' keeps all (default: en)")
    p.add_argument("--workers", type=int, default=1, help="processes (0 = one per CPU; default 1)")
    p.add_argument("--steps", default=None, metavar="LIST",
                   help="comma-separated steps in order (default: url,extract,language,gopher_repetition,"
                        "gopher_quality,c4,fineweb,pii)")
    p.add_argument("--no-quality", action="store_true", help="skip the Gopher, C4 and FineWeb rules")
    p.add_argument("--no-dedup", action="store_true", help="skip exact and MinHash deduplication")
    p.add_argument("--no-pii", action="store_true", help="keep e-mails, IPs and phone numbers as they are")
    p.add_argument("--force", action="store_true", help="clean again even if OUT is complete and up to date")
    add_override_args(p)
    p.set_defaults(func=_cmd_clean)


def _cmd_clean(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmforge.config import config_from_dict
    from lmforge.pipeline import run_stages

    out = Path(args.out).resolve()
    data = {**_config_data(args), "runs_dir": str(out.parent), "name": out.name}
    cfg = config_from_dict(data, origin="lmforge clean")
    rd = run_stages(cfg, only=["clean"], force=["clean"] if args.force else [])
    stats = rd.read_stats("clean")
    print(f"kept {stats['docs']} of {stats['records']} records -> {rd.docs} (rejects: {rd.rejects}, "
          f"stats: {rd.stats / 'clean.json'})")
    return 0


def _config_data(args: argparse.Namespace) -> dict:
    from lmforge.config import apply_override
    from lmforge.errors import ConfigError

    from lmforge.clean.config import DEFAULT_STEPS

    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else list(DEFAULT_STEPS)
    dropped = ({"gopher_repetition", "gopher_quality", "c4", "fineweb"} if args.no_quality else set()) | \
        ({"pii"} if args.no_pii else set())
    clean = {"inputs": [{"path": p, "format": args.format, "source": args.source, "text_field": args.text_field}
                        for p in args.input],
             "workers": args.workers, "steps": [s for s in steps if s not in dropped],
             "exact_dedup": not args.no_dedup, "minhash_dedup": not args.no_dedup}
    if args.languages is not None:
        clean["language"] = {"languages": [code.strip() for code in args.languages.split(",") if code.strip()]}
    data, problems = {"clean": clean}, []
    for item in args.overrides:
        apply_override(data, item, problems)
    if problems:
        raise ConfigError(problems)
    return data
