"""The clean stage: raw records -> the steps of ``[clean] steps`` (lmforge/clean/steps/: URL,
extraction, language, Gopher, C4, FineWeb rules, PII) -> dedup -> Parquet.

Per-document steps run shard by shard (a shard is a group of input files, or a slice of one
file), in this process, a local process pool or Ray tasks: the same :func:`process_shard` in
each, each shard's result saved as a part (parts.py). Dedup then runs over the parts in
FineWeb's four stages, as tasks on the same executor (dedup/stages.py), and docs/ and rejects/
are written in output order (outputs.py). PII is masked before dedup, so pages that differ only
by an address count as duplicates.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.clean.config import CleanConfig, InputSpec
from lmforge.clean.document import Document, Reject
from lmforge.clean.stats import CleanStats
from lmforge.errors import LmforgeError



@dataclass(frozen=True)
class InputFile:
    index: int
    path: str
    format: str
    source: str
    text_field: str
    site_sources: tuple[tuple[str, str], ...] = ()
    """(URL prefix, source) of the served sites of this run's crawl: a page under one of them
    belongs to that source rather than ``source`` (crawl/sources.json; the longest prefix wins)."""

    def source_of(self, url: str) -> str:
        return next((name for prefix, name in self.site_sources if url.startswith(prefix)), self.source)


@dataclass
class Shard:
    """Input files read whole (``n_slices == 1``) or every ``n_slices``-th record from ``slice``."""

    index: int
    files: list[InputFile]
    slice: int = 0
    n_slices: int = 1


@dataclass
class ShardResult:
    docs: list[Document] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    stats: CleanStats = field(default_factory=CleanStats)


# ---------------------------------------------------------------- the stage


def run_stage(cfg, rd) -> dict:
    """Clean ``cfg.clean.inputs`` (or this run's crawl) into ``rd.docs`` and ``rd.rejects``; return stats."""
    c: CleanConfig = cfg.clean
    files = resolve_inputs(c, rd)
    if c.executor == "ray":
        from lmforge.executor import import_ray

        import_ray()  # fail before emptying the output folders
    rd.reset_dir(rd.docs)
    rd.reset_dir(rd.rejects)
    workers = c.workers or os.cpu_count() or 1
    shards = plan_shards(files, workers if c.executor == "local" else max(workers, 2))
    t0 = time.perf_counter()
    stats = CleanStats()
    for part in _shard_stats(shards, files, c, workers, rd.clean_parts):
        stats.merge(part)
    from lmforge.clean.outputs import write_outputs

    from lmforge.clean.dedup.stages import process_map

    write_outputs(rd.clean_parts, [s.index for s in shards], c, stats, _by_url(c), rd.docs, rd.rejects,
                  process_map(workers, c.executor))
    shutil.rmtree(rd.clean_parts)  # the outputs hold it all now
    out = stats.as_dict()
    out.update(inputs=len(files), shards=len(shards), workers=workers, executor=c.executor,
               docs_per_second=round(stats.totals["records"] / max(time.perf_counter() - t0, 1e-9), 1))
    _log_funnel(out)
    from lmforge.clean.stats import check_kept, log_unreadable

    log_unreadable(out)
    check_kept(out)
    return out


def _by_url(c: CleanConfig) -> bool:
    """Documents (and rejects) go out in input order; those of this run's own crawl by URL, since
    the crawl's record order is an accident of its threads: two crawls of one site then give the
    same docs files, byte for byte, and dedup keeps the same one of each group."""
    return not c.inputs


def resolve_inputs(c: CleanConfig, rd) -> list[InputFile]:
    """The input files in order: this run's ``crawl/*.warc.gz`` as 'web' (when there are no
    ``[[clean.inputs]]``, or with ``read_crawl``), then ``[[clean.inputs]]``."""
    from lmforge.collect.readers import expand_inputs

    specs = list(c.inputs)
    if not specs or c.read_crawl:
        if not sorted(Path(rd.crawl).glob("*.warc.gz")):
            raise LmforgeError(f"clean: nothing to clean: no {rd.crawl}/*.warc.gz and no [[clean.inputs]]; "
                               "set [collect] seeds (or serve_demo = true) to crawl, or add [[clean.inputs]] "
                               "with path = 'data/*.warc.gz'")
        specs.insert(0, InputSpec(path=str(Path(rd.crawl) / "*.warc.gz"), format="warc", source="web"))
    crawl = str(Path(rd.crawl) / "*.warc.gz")
    files = []
    for spec in specs:
        sites = _site_sources(rd.crawl) if spec.path == crawl else ()
        for path in expand_inputs(spec.path):
            files.append(InputFile(len(files), str(path), spec.format, spec.source or _source_name(spec.path),
                                   spec.text_field, sites))
    return files


def _site_sources(crawl_dir) -> tuple[tuple[str, str], ...]:
    """crawl/sources.json (written by a crawl of served sites) as (prefix, source), longest first."""
    import json

    from lmforge.collect.crawl import SITE_SOURCES

    path = Path(crawl_dir) / SITE_SOURCES
    if not path.is_file():
        return ()
    return tuple(sorted(json.loads(path.read_text(encoding="utf-8")).items(), key=lambda kv: -len(kv[0])))


def _source_name(pattern: str) -> str:
    """``data/site.warc.gz`` -> site, ``data/html/`` -> html, ``data/*.jsonl`` -> data."""
    if "://" in pattern and not any(ch in pattern for ch in "*?["):
        return pattern.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "input"
    path = Path(pattern)
    if any(ch in pattern for ch in "*?["):
        path = next((p for p in path.parents if not any(ch in str(p) for ch in "*?[")), Path("."))
        return path.resolve().name or "input"
    return path.name.split(".")[0] if path.is_file() else path.resolve().name


def plan_shards(files: list[InputFile], workers: int) -> list[Shard]:
    """About four shards per worker (so a slow shard does not hold the rest back).

    Many small files are grouped in runs of neighbours; a few big files are cut into slices
    that each take every n-th record.
    """
    if workers <= 1:
        return [Shard(i, [f]) for i, f in enumerate(files)]
    target = workers * 4
    if len(files) >= target:
        per = math.ceil(len(files) / target)
        return [Shard(i, files[j:j + per]) for i, j in enumerate(range(0, len(files), per))]
    n_slices = math.ceil(target / len(files))
    return [Shard(i * n_slices + s, [f], s, n_slices) for i, f in enumerate(files) for s in range(n_slices)]


def _shard_stats(shards: list[Shard], files: list[InputFile], c: CleanConfig, workers: int,
                 folder: Path) -> list[CleanStats]:
    """Every shard's counts, in shard order, once its part is saved under ``folder``: the parts
    an interrupted run finished are kept (clean/parts.py), the others are made now."""
    from dataclasses import asdict

    from lmforge.clean.parts import input_fingerprint, load_stats, open_parts

    settings = {k: v for k, v in asdict(c).items() if k not in ("workers", "executor")}  # neither changes results
    plan = {"inputs": [[*input_fingerprint(f.path), f.format, f.source, f.text_field, f.site_sources] for f in files],
            "settings": settings, "shards": [[s.index, [f.index for f in s.files], s.slice, s.n_slices] for s in shards]}
    done = open_parts(folder, plan)
    if done:
        print(f"[clean] resuming: {len(done)} of {len(shards)} shards were done")
    run_shards([s for s in shards if s.index not in done], c, workers, folder)
    return [load_stats(folder, s.index) for s in shards]


def run_shards(shards: list[Shard], c: CleanConfig, workers: int, folder: Path) -> None:
    """Process and save (``folder``, clean/parts.py) each shard, in this process (1 worker), a
    process pool, or Ray (lmforge/executor.py)."""
    import contextlib
    import functools

    from tqdm import tqdm

    from lmforge.executor import map_unordered

    bar = tqdm(unit="record", desc="clean", disable=None, leave=False)
    try:
        if c.executor == "local" and (workers <= 1 or len(shards) <= 1):
            for s in shards:
                save_shard(s, c, folder, progress=bar.update)
            return
        work = functools.partial(save_shard, c=c, folder=folder)
        with contextlib.closing(map_unordered(work, shards, workers, c.executor)) as records:
            for count in records:
                bar.update(count)
    finally:
        bar.close()


def save_shard(shard: Shard, c: CleanConfig, folder: Path, progress=None) -> int:
    """:func:`process_shard`, its result saved as the shard's part, its documents and rejects in
    the output order (the stage merges the parts); returns its record count."""
    from lmforge.clean.outputs import order_key
    from lmforge.clean.parts import save

    result = process_shard(shard, c, progress)
    key = order_key(_by_url(c))
    result.docs.sort(key=lambda d: key(d.url, d.order))
    result.rejects.sort(key=lambda r: key(r.url, r.order))
    return save(Path(folder), shard.index, result)


# ---------------------------------------------------------------- one shard


def process_shard(shard: Shard, c: CleanConfig, progress=None) -> ShardResult:
    """Run the steps of ``c.steps`` on every record of ``shard``, and sign the documents kept for
    dedup; picklable in and out.

    ``progress(1)`` is called per record when given (in-process runs drive a progress bar with it).
    """
    from lmforge.clean.steps import build_steps
    from lmforge.collect.readers import UnreadableInput, iter_records

    result = ShardResult()
    steps = build_steps(c)
    for f in shard.files:
        try:
            for i, record in enumerate(iter_records(f.path, f.format, f.text_field, result.stats.skipped)):
                if i % shard.n_slices == shard.slice:
                    _process_record(record, f, i, steps, c, result)
                    if progress is not None:
                        progress(1)
        except UnreadableInput as exc:  # counted once (by the file's first slice); the other files go on
            if shard.slice == 0:
                result.stats.unreadable[f.path] = str(exc)
    return result


def _process_record(record, f: InputFile, index: int, steps: list, c: CleanConfig, result: ShardResult) -> None:
    from lmforge.clean.steps import apply_step
    from lmforge.clean.steps.extract import RECORD

    stats = result.stats
    size = len(record.body) if record.body is not None else len((record.text or "").encode("utf-8"))
    source = f.source_of(record.url) if f.site_sources else f.source
    stats.totals.update(records=1, bytes_in=size)
    stats.sources[source].update(records=1, bytes_in=size)
    doc = Document(record.id, record.url, source, "", date=record.date, order=(f.index, index),
                   meta={RECORD: record})
    if not all(apply_step(step, doc, stats, result.rejects) for step in steps):
        return
    doc.meta.clear()  # the steps' caches
    result.docs.append(doc)


# ---------------------------------------------------------------- the funnel


def _log_funnel(stats: dict) -> None:
    for name, counts in stats["steps"].items():
        drops = ", ".join(f"{k[8:]}={v}" for k, v in counts.items() if k.startswith("dropped_"))
        print(f"[clean] {name:<12} in={counts['in']:<7} out={counts['out']:<7} {drops}".rstrip())
    if not stats["docs"]:
        print("[clean] warning: no document kept; the reasons are in rejects/*.parquet and stats/clean.json "
              "([clean.language] languages and the rules' thresholds are the usual suspects)")
