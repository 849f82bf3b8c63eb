"""`python -m lmforge` (what torchrun launches)."""

import sys

from lmforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
