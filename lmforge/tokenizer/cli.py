"""`lmforge tokenizer {train,show,stats}` and `lmforge tokenize`. Imports stay inside handlers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmforge.errors import LmforgeError


def register(subparsers) -> None:
    from lmforge.cli import add_override_args
    from lmforge.cliargs import non_negative_int

    p = subparsers.add_parser("tokenizer", help="train, inspect and measure the BPE tokenizer")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train the tokenizer: of a config's run, or standalone with --input")
    t.add_argument("config", nargs="?", help="TOML config (runs `lmforge run CONFIG --only tokenizer`)")
    add_override_args(t)
    t.add_argument("--force", action="store_true", help="retrain even if the stage is complete")
    t.add_argument("--input", metavar="DOCS", help="standalone: a docs folder, Parquet file or glob (column `text`)")
    t.add_argument("--out", metavar="DIR", help="standalone: output folder")
    t.add_argument("--vocab-size", type=int, default=4096, help="standalone: vocabulary size (default 4096)")
    t.add_argument("--pattern", default="gpt4", help="standalone: gpt2, gpt4, o200k or a regex (default gpt4)")
    t.add_argument("--split-digits", action="store_true", help="standalone: numbers as single digits")
    t.add_argument("--max-bytes", type=non_negative_int, default=0, metavar="N",
                   help="standalone: train on a seeded sample of documents up to N bytes (default: all)")
    t.add_argument("--seed", type=int, default=1337, help="standalone: seed of that sample (default 1337)")
    t.add_argument("--special", action="append", metavar="TOKEN",
                   help="standalone: special tokens (repeatable; default <|endoftext|>)")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("show", help="show how a text splits into tokens, with ids and the count")
    s.add_argument("text", help="the text ('-' reads stdin)")
    s.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder (default: the newest runs/*/tokenizer)")
    s.add_argument("--json", action="store_true", help="print JSON for machines")
    s.set_defaults(func=_cmd_show)

    st = sub.add_parser("stats", help="bytes per token on held-out documents, per language; longest and unused tokens")
    st.add_argument("run_dir", help="run directory, e.g. runs/demo (uses its tokenizer/, docs/ and config)")
    st.add_argument("--split", choices=("val", "all"), default="val", help="documents to measure (default val)")
    st.add_argument("--json", action="store_true", help="print JSON for machines")
    st.set_defaults(func=_cmd_stats)

    k = subparsers.add_parser("tokenize", help="encode a run's documents into token shards (stage `tokenize`)")
    k.add_argument("config", help="TOML config, e.g. configs/demo.toml")
    add_override_args(k)
    k.add_argument("--force", action="store_true", help="re-encode even if the stage is complete")
    k.set_defaults(func=_cmd_tokenize)


def _run_stage(config: str, overrides: list[str], stage: str, force: bool) -> int:
    from lmforge.config import load_config
    from lmforge.pipeline import run_pipeline

    cfg = load_config(config, overrides)
    rd = run_pipeline(cfg, only=[stage], force=[stage] if force else [])
    print(json.dumps(rd.read_stats(stage), ensure_ascii=False))
    return 0


def _cmd_tokenize(args) -> int:
    return _run_stage(args.config, args.overrides, "tokenize", args.force)


def _cmd_train(args) -> int:
    if args.config:
        return _run_stage(args.config, args.overrides, "tokenizer", args.force)
    if not (args.input and args.out):
        raise LmforgeError("give a CONFIG, or --input DOCS and --out DIR for a standalone tokenizer")
    from lmforge.cliargs import writable_folder
    from lmforge.tokenizer.corpus import doc_files
    from lmforge.tokenizer.train import sampled_texts, save_tokenizer_dir, train_tokenizer

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise LmforgeError(f"--out {args.out}: a file is in the way; give a folder")
    writable_folder(Path(args.out).resolve().parent, "--out")  # the folder is written beside OUT, then renamed

    tok = train_tokenizer(sampled_texts(doc_files(args.input), args.max_bytes, args.seed), args.vocab_size, args.pattern,
                          args.special or ["<|endoftext|>"], args.split_digits)
    save_tokenizer_dir(tok, args.out)
    print(json.dumps({"out": args.out, "vocab_size": tok.vocab_size, **tok.meta["corpus"]}))
    return 0


def _find_tokenizer(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    found = sorted(Path("runs").glob("*/tokenizer/tokenizer.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise LmforgeError("no tokenizer found under runs/; pass --tokenizer DIR or train one first")
    return found[-1].parent


def _cmd_show(args) -> int:
    from lmforge.tokenizer.bpe import Tokenizer
    from lmforge.tokenizer.show import render_tokens, show_tokens

    text = sys.stdin.read() if args.text == "-" else args.text
    view = show_tokens(Tokenizer.load(_find_tokenizer(args.tokenizer)), text)
    if args.json:
        print(json.dumps(view, ensure_ascii=False))
    else:
        print(render_tokens(view, colour=sys.stdout.isatty()))
    return 0


def _cmd_stats(args) -> int:
    from lmforge.config import load_config
    from lmforge.rundir import RunDir
    from lmforge.tokenizer.bpe import Tokenizer
    from lmforge.tokenizer.corpus import doc_files
    from lmforge.tokenizer.stats import format_stats, tokenizer_stats

    rd = RunDir(Path(args.run_dir))
    cfg = load_config(rd.config)
    st = tokenizer_stats(Tokenizer.load(rd.tokenizer), doc_files(rd.docs), cfg.seed, cfg.tokenizer.val_fraction,
                         split=args.split)
    print(json.dumps(st, ensure_ascii=False) if args.json else format_stats(st))
    return 0
