"""``python -m lmforge.clean.steps --table``: the table of steps and settings for docs/clean.md."""

import argparse

from lmforge.clean.steps import table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lmforge.clean.steps")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of every step's settings")
    if parser.parse_args().table:
        print(table(), end="")
    else:
        parser.print_help()
