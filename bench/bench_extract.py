"""Main-text extraction quality and speed: lmforge vs trafilatura's default and resiliparse.

The pages are the test pages of newspaper4k (bench/data/extract/: 19 news articles in 9
languages, each with the article's text as its gold, see bench/data/README.md). Each extractor
gets the same decoded HTML; its text is compared with the gold as in the ScrapingHub
article-extraction benchmark: tokens are runs of word characters (``\\w+``), each page's true
positives, false positives and false negatives (counted over the bag of tokens, a token as often
as it occurs) are normalised by their sum, and precision and recall are means over pages, F1
their harmonic mean. The same over word 4-gram shingles (that benchmark's own unit) is printed
beside it. Speed is pages per CPU-second of this process, each extractor warmed up on one page
first, the median of ``--repeats`` passes taken in turns.

    python bench/bench_extract.py [--repeats 5] [--data bench/data/extract]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

TOKEN = re.compile(r"\w+")


def load_pages(folder: Path) -> list[tuple[str, str, str]]:
    """(name, decoded HTML, gold text) of each page that has both files."""
    from lmforge.collect.charset import decode_html

    pages = []
    for gold in sorted(folder.glob("*.txt")):
        html = folder / (gold.stem + ".html.gz")
        if html.exists():
            pages.append((gold.stem, decode_html(gzip.decompress(html.read_bytes()), None),
                          gold.read_text(encoding="utf-8")))
    if not pages:
        raise SystemExit(f"no page with both NAME.html.gz and NAME.txt in {folder}")
    return pages


def counts(gold: str, pred: str, n: int) -> tuple[float, float, float]:
    """Normalised (tp, fp, fn) over the bags of word n-grams of ``gold`` and ``pred``."""
    g, p = _grams(gold, n), _grams(pred, n)
    tp, fp, fn = sum((g & p).values()), sum((p - g).values()), sum((g - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _grams(text: str, n: int) -> Counter:
    tokens = TOKEN.findall(text or "")
    return Counter(tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i:i + n])


def scores(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Mean precision, mean recall and their F1 over pages (an empty extraction has precision 0)."""
    precision = statistics.mean(tp / (tp + fp) if tp + fp else 0.0 for tp, fp, fn in rows)
    recall = statistics.mean(tp / (tp + fn) if tp + fn else 0.0 for tp, fp, fn in rows)
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def extractors() -> dict:
    import trafilatura

    try:
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree
    except ImportError:
        raise SystemExit("bench_extract.py compares with resiliparse: pip install resiliparse "
                         "(or pip install -e '.[dev]')") from None

    from lmforge.clean.extract import clean_lines, extract_text

    return {
        "lmforge (default)": lambda html: clean_lines(extract_text(html)),
        "lmforge (fast = true)": lambda html: clean_lines(extract_text(html, fast=True)),
        "trafilatura.extract (default)": lambda html: trafilatura.extract(html) or "",
        "trafilatura (favor_precision)": lambda html: trafilatura.extract(
            html, favor_precision=True, include_tables=True, include_comments=False) or "",
        "resiliparse (main_content)": lambda html: extract_plain_text(HTMLTree.parse(html), main_content=True),
    }


def measure(fns: dict, pages, repeats: int) -> tuple[dict, dict]:
    """Each extractor's texts and its pages per CPU-second (median of ``repeats`` passes). The
    passes take turns (one pass of each extractor, then the next round), so that a change in the
    machine's load falls on all of them alike."""
    for fn in fns.values():
        fn(pages[0][1])  # imports and first-call set-up out of the timing
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, list[str]] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            outs[name] = [fn(html) for _, html, _ in pages]
            times[name].append(time.process_time() - t0)
    return outs, {name: len(pages) / statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=Path(__file__).parent / "data" / "extract")
    args = ap.parse_args()
    pages = load_pages(args.data)
    print(f"threads: 1 (one process); machine cores: {os.cpu_count()}; load: {os.getloadavg()[0]:.1f}")
    print(f"pages: {len(pages)} (newspaper4k's test pages with their article text), repeats: {args.repeats}\n")
    print(f"{'extractor':<31} {'P':>6} {'R':>6} {'F1':>6}   {'F1 4-gram':>9}   {'pages/CPU-s':>11}")
    outs, rates = measure(extractors(), pages, args.repeats)
    for name, texts in outs.items():
        p, r, f1 = scores([counts(gold, out, 1) for (_, _, gold), out in zip(pages, texts)])
        f4 = scores([counts(gold, out, 4) for (_, _, gold), out in zip(pages, texts)])[2]
        print(f"{name:<31} {p:6.3f} {r:6.3f} {f1:6.3f}   {f4:9.3f}   {rates[name]:11.1f}")
    base = rates["trafilatura (favor_precision)"]
    print(f"\nspeed of lmforge (default) / trafilatura favor_precision: {rates['lmforge (default)'] / base:.2f}x; "
          f"lmforge / trafilatura default: {rates['lmforge (default)'] / rates['trafilatura.extract (default)']:.2f}x")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
