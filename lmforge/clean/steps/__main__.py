"""``python -m lmforge.clean.steps --table``: the table of steps and settings for docs/clean.md
(``--update docs/clean.md`` writes it between the file's ``settings table`` markers)."""

import argparse
from pathlib import Path

from lmforge.clean.steps.table import BEGIN, END, table, with_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lmforge.clean.steps")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of every step's settings")
    parser.add_argument("--update", type=Path, metavar="MD", help=f"rewrite the table between {BEGIN} and {END}")
    args = parser.parse_args()
    if args.table:
        print(table(), end="")
    elif args.update:
        args.update.write_text(with_table(args.update.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        parser.print_help()
