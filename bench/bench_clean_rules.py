"""Rule agreement and chain speed: lmforge's clean steps vs datatrove's own filter classes.

1. Agreement: every page of a crawl of the demo site is extracted once (lmforge's extractor);
   the same texts go to datatrove 0.10.1's GopherRepetitionFilter, GopherQualityFilter,
   C4QualityFilter (filter_no_terminal_punct=False, as FineWeb) and FineWebQualityFilter, and to
   lmforge's gopher_repetition, gopher_quality, c4 and fineweb steps, each rule on its own. The
   bench prints, per filter, how often the verdicts (keep, or drop with the same reason) agree
   (goal >= 99%), and lists every disagreement with both reasons and our measured value.
2. Speed: the FineWeb chain from the crawl's WARC file to the verdict (read the records, decode
   the HTML, extract the main text, then the four filters, stopping at the first drop), in CPU
   seconds of one process per side: datatrove's WarcReader, Trafilatura(favour_precision) and
   filters; lmforge's reader, extract step settings and steps. Language ID stays out of both
   (datatrove's downloads a fastText model at run time). Prints pages per CPU-second of each
   side and the ratio (goal >= 3x), and the pages each side read and kept.

datatrove pins an older trafilatura, so it runs in its own virtualenv, made on first use under
``--venv`` (default ~/.cache/lmforge/datatrove-0.10.1): python -m venv, then pip install
datatrove[processing]==0.10.1 and what its filters import (spacy, warcio, faust-cchardet,
python-magic, orjson, lxml_html_clean).

    python bench/bench_clean_rules.py [--pages 530] [--venv DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

DATATROVE = "datatrove[processing]==0.10.1"
EXTRA = ["spacy", "warcio", "faust-cchardet", "python-magic", "orjson", "lxml_html_clean"]
FILTERS = ["gopher_repetition", "gopher_quality", "c4", "fineweb"]
# datatrove's reasons -> ours, where the names differ
REASONS = {
    "gopher_short_doc": "too_few_words", "gopher_long_doc": "too_many_words",
    "gopher_below_avg_threshold": "mean_word_length", "gopher_above_avg_threshold": "mean_word_length",
    "gopher_too_many_hashes": "hash_word_ratio", "gopher_too_many_ellipsis": "ellipsis_word_ratio",
    "gopher_too_many_bullets": "bullet_lines", "gopher_too_many_end_ellipsis": "ellipsis_lines",
    "gopher_below_alpha_threshold": "alpha_words_ratio", "gopher_enough_stop_words": "stop_words",
}

DATATROVE_SIDE = r'''
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)

pages = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
filters = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(),
           "c4": C4QualityFilter(filter_no_terminal_punct=False), "fineweb": FineWebQualityFilter()}

def verdict(f, text):
    doc = Document(text=text, id="x")
    v = f.filter(doc)
    return ["keep", doc.text] if v is True else ["drop", v[1] if isinstance(v, tuple) else ""]

agreement = [{name: verdict(f, p["text"]) for name, f in filters.items()} for p in pages]
verdict(filters["fineweb"], pages[0]["text"])  # spaCy's tokenizer loads here, not in the timing
t0 = time.process_time()
for p in pages:
    doc = Document(text=p["text"], id="x")
    all(f.filter(doc) is True for f in filters.values())
rules_cpu = time.process_time() - t0

from datatrove.pipeline.readers import WarcReader
extractor = Trafilatura(favour_precision=True, timeout=None)
extractor.extract(pages[0]["html"])
t0 = time.process_time()
read = kept = 0
for doc in WarcReader(sys.argv[3]).read_file(sys.argv[4]):
    read += 1
    text = extractor.extract(doc.text)
    if not text:
        continue
    doc = Document(text=text, id="x")
    if all(f.filter(doc) is True for f in filters.values()):
        kept += 1
cpu = time.process_time() - t0
json.dump({"agreement": agreement, "cpu": cpu, "read": read, "kept": kept, "rules_cpu": rules_cpu},
          open(sys.argv[2], "w"))
'''


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [python, "-c", "import datatrove, spacy, trafilatura"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"making the datatrove virtualenv in {venv} (a few minutes, once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", DATATROVE, *EXTRA], check=True)
    return python


def crawl_pages(folder: Path, max_pages: int) -> tuple[Path, list[dict]]:
    """A crawl of the demo site (its WARC file) and its HTML pages, decoded, with lmforge's
    extraction of each."""
    from lmforge.clean.extract import extract_text
    from lmforge.collect.charset import decode_html
    from lmforge.collect.config import CollectConfig
    from lmforge.collect.crawl import crawl
    from lmforge.collect.demo_site import serve_demo
    from lmforge.collect.readers import iter_records

    cfg = CollectConfig(max_pages=max_pages, per_host_delay=0, concurrency=4, per_host_concurrency=4)
    with serve_demo() as base:
        stats = crawl(cfg, folder / "crawl", [base + "/"], progress=False)
    (name,) = stats["warc_files"]
    warc = folder / "crawl" / name
    pages = []
    for r in iter_records(warc):
        if r.body and "html" in (r.content_type or "") and (r.extra.get("status") or 200) == 200:
            html = decode_html(r.body, r.charset)
            text = extract_text(html, r.url)
            if text:
                pages.append({"url": r.url, "html": html, "text": text})
    return warc, sorted(pages, key=lambda p: p["url"])


def count_html_pages(warc: Path) -> int:
    from lmforge.collect.readers import iter_records

    return sum(1 for r in iter_records(warc) if "html" in (r.content_type or ""))


def our_verdicts(pages: list[dict]) -> list[dict]:
    from lmforge.clean.document import Document
    from lmforge.clean.steps import step_class

    steps = {name: step_class(name)() for name in FILTERS}
    out = []
    for p in pages:
        row = {}
        for name, step in steps.items():
            doc = Document("x", p["url"], "bench", p["text"], language="en")
            v = step.filter(doc)
            row[name] = ["keep", doc.text] if v is True else ["drop", v[1], v[2] if len(v) > 2 else ""]
        out.append(row)
    return out


def our_rules(pages: list[dict]) -> float:
    """CPU seconds of the four rules alone, on the extracted texts."""
    from lmforge.clean.document import Document
    from lmforge.clean.steps import step_class

    steps = [step_class(name)() for name in FILTERS]
    t0 = time.process_time()
    for p in pages:
        doc = Document("x", p["url"], "bench", p["text"], language="en")
        all(step.filter(doc) is True for step in steps)
    return time.process_time() - t0


def our_chain(warc: Path, fast: bool = False) -> tuple[float, int, int]:
    """(CPU seconds, pages read, pages kept) of the chain from the WARC file, as the clean
    stage runs it: the extract step (reader record to text, symbol lines removed), then the rules."""
    from lmforge.clean.config import ExtractStep as ExtractSettings
    from lmforge.clean.document import Document
    from lmforge.clean.steps import step_class
    from lmforge.clean.steps.extract import RECORD, ExtractStep
    from lmforge.collect.readers import iter_records

    extract = ExtractStep(ExtractSettings(fast=fast))
    steps = [step_class(name)() for name in FILTERS]
    steps[-1].filter(Document("x", "", "bench", "Warm the regexes. " * 20, language="en"))
    t0 = time.process_time()
    read = kept = 0
    for record in iter_records(warc):
        read += 1
        doc = Document("x", record.url, "bench", "", language="en")
        doc.meta[RECORD] = record
        if extract.filter(doc) is True and all(step.filter(doc) is True for step in steps):
            kept += 1
    return time.process_time() - t0, read, kept


def compare(pages, ours, theirs) -> None:
    print(f"\n{'filter':<18} {'agree':>7} {'of':>5} {'%':>7}   datatrove drops / ours")
    disagreements = []
    for name in FILTERS:
        agree = 0
        for p, o, t in zip(pages, ours, theirs):
            o, t = o[name], t[name]
            same = o[0] == t[0] and (o[1] == t[1] if o[0] == "keep" and name == "c4" else
                                     o[0] == "keep" or REASONS.get(t[1], t[1]) == o[1])
            agree += same
            if not same:
                disagreements.append((name, p["url"], t[:2] if t[0] == "drop" else ["keep"], o[:3] if o[0] == "drop"
                                      else ["keep (text differs)" if t[0] == "keep" else "keep"]))
        drops_t = Counter(REASONS.get(t[name][1], t[name][1]) for t in theirs if t[name][0] == "drop")
        drops_o = Counter(o[name][1] for o in ours if o[name][0] == "drop")
        print(f"{name:<18} {agree:>7} {len(pages):>5} {100 * agree / len(pages):>6.2f}%   "
              f"{dict(drops_t)} / {dict(drops_o)}")
    print(f"\ndisagreements: {len(disagreements)}")
    for name, url, t, o in disagreements:
        print(f"  {name:<18} {url.rsplit('/', 2)[-2] + '/' + url.rsplit('/', 1)[-1]:<40} datatrove={t} ours={o}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=530)
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "lmforge" / "datatrove-0.10.1")
    args = ap.parse_args()
    print(f"threads: 1 per side (one process each); machine cores: {os.cpu_count()}; "
          f"load average: {os.getloadavg()[0]:.1f}")
    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warc, pages = crawl_pages(tmp, args.pages)
        data = tmp / "pages.jsonl"
        data.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pages), encoding="utf-8")
        (tmp / "side.py").write_text(DATATROVE_SIDE)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
        subprocess.run([python, tmp / "side.py", data, tmp / "theirs.json", warc.parent, warc.name],
                       check=True, env=env)
        theirs = json.loads((tmp / "theirs.json").read_text())
        print(f"pages: {len(pages)} (demo site crawl, extracted once by lmforge for the agreement part)")
        compare(pages, our_verdicts(pages), theirs["agreement"])
        rules = our_rules(pages)
        print(f"\nthe four rules alone on the extracted texts: lmforge {rules:.2f} CPU s, datatrove "
              f"{theirs['rules_cpu']:.2f} CPU s: {theirs['rules_cpu'] / rules:.2f}x")
        print(f"\nFineWeb chain from the WARC file ({warc.stat().st_size / 1e6:.1f} MB, gzip per record) to the "
              "verdict: read, extract, gopher_repetition, gopher_quality, c4, fineweb; one process each:")
        n_html = count_html_pages(warc)
        print(f"  (pages per CPU-second: the WARC's {n_html} HTML responses, the same for both sides, over each side's CPU)")
        theirs_rate = n_html / theirs["cpu"]
        print(f"  datatrove                  {theirs['cpu']:7.1f} CPU s  {theirs_rate:6.2f} pages/CPU-s  "
              f"read {theirs['read']}, kept {theirs['kept']}")
        for fast in (False, True):
            cpu, read, kept = our_chain(warc, fast)
            rate = n_html / cpu
            print(f"  lmforge (extract fast={str(fast).lower():<5}) {cpu:7.1f} CPU s  {rate:6.2f} pages/CPU-s  "
                  f"read {read}, kept {kept}  ratio {rate / theirs_rate:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
