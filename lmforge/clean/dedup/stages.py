"""Exact and near dedup over the clean stage's parts in FineWeb's four stages, none of which
holds the whole corpus's signatures:

1. **sign** (a task per part): the exact hash and the MinHash band hashes of each document,
   written per band and bucket: ``signs/NNNNN/<band>-<bucket>.npy``;
2. **pair** (a task per band and bucket): one band's hashes from every part, sorted; documents
   with equal hashes are linked: ``pairs/<band>-<bucket>.npy``;
3. **cluster** (one task, memory in proportion to the duplicates only): linked documents form
   clusters; the first of each in the output order is kept: ``removed/NNNNN.parquet``;
4. **filter**: the output writer leaves out the removed rows (clean/outputs.py).

A document is known by ``part << 32 | row``. Each stage's files appear under their final name
once complete (a folder or file renamed into place), so an interrupted dedup resumes at the
tasks it had not finished. Tasks run through ``map_fn(fn, items)``: the builtin map, a process
pool or Ray tasks (then the folder must be on storage every node shares).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from lmforge.clean.dedup.settings import MinHashConfig

EXACT = "exact"
URL = "url"
STEPS = ("url", "exact", "near")
"""In this order: a page kept under another spelling of its URL, the same text, similar text."""
REASONS = {"url": "duplicate_url", "exact": "exact_duplicate", "near": "near_duplicate"}
READ_ROWS = 512


@dataclass(frozen=True)
class DedupPlan:
    """What the stages need to know; picklable, for workers."""

    parts: Path
    """The folder of the clean parts (``NNNNN.docs.parquet``)."""
    work: Path
    """The dedup's own folder of intermediate files."""
    indexes: tuple[int, ...]
    url: bool
    exact: bool
    near: bool
    minhash: MinHashConfig
    buckets: int
    by_url: bool

    @property
    def bands(self) -> list[str]:
        return self.bands_of("url") + self.bands_of("exact") + self.bands_of("near")

    def bands_of(self, step: str) -> list[str]:
        if step == "url":
            return [URL] if self.url else []
        if step == "exact":
            return [EXACT] if self.exact else []
        return [f"b{i:02d}" for i in range(self.minhash.bands)] if self.near else []


def deduplicate(parts: Path, indexes: list[int], exact: bool, near: bool, minhash: MinHashConfig, by_url: bool,
                map_fn: Callable = map, url: bool = False) -> dict:
    """Run the stages over the parts; return ``{"<step>_dedup": counts}`` for the steps switched
    on (``in``, ``out``, ``dropped_<reason>``, ``seconds``). The removed rows are in
    ``removed/NNNNN.parquet`` under ``parts/dedup`` (see :func:`removed_rows`)."""
    import pyarrow.parquet as pq

    docs = sum(pq.ParquetFile(parts / f"{i:05d}.docs.parquet").metadata.num_rows for i in indexes)
    plan = DedupPlan(parts, parts / "dedup", tuple(indexes), url, exact, near, minhash,
                     max(1, math.ceil(docs / minhash.docs_per_bucket)), by_url)
    plan.work.mkdir(parents=True, exist_ok=True)
    seconds = {}
    if plan.bands:
        todo = [i for i in indexes if not (plan.work / "signs" / f"{i:05d}").is_dir()]
        seconds["sign"] = sum(map_fn(partial(sign_part, plan), todo))
        tasks = [(band, k) for band in plan.bands for k in range(plan.buckets)
                 if not (plan.work / "pairs" / f"{band}-{k:03d}.npy").exists()]
        seconds["pair"] = sum(map_fn(partial(pair_bucket, plan), tasks))
        if not (plan.work / "removed").is_dir():
            cluster(plan)
    return _counts(plan, docs, seconds)


def removed_rows(parts: Path, index: int) -> dict[int, tuple[str, str, str]]:
    """{row: (step, reason, detail)} of the rows dedup removed from part ``index``."""
    import pyarrow.parquet as pq

    path = parts / "dedup" / "removed" / f"{index:05d}.parquet"
    if not path.exists():
        return {}
    t = pq.read_table(path).to_pydict()
    return {r: (s, why, d) for r, s, why, d in zip(t["row"], t["step"], t["reason"], t["detail"])}


# ---------------------------------------------------------------- 1. sign


def sign_part(plan: DedupPlan, index: int) -> float:
    """Stage 1 for part ``index``: its documents' band hashes, per band and bucket; returns CPU seconds."""
    import pyarrow.parquet as pq

    from lmforge.clean.dedup.exact import exact_hashes
    from lmforge.clean.dedup.minhash import band_hashes, signatures

    t0 = time.process_time()
    m = plan.minhash
    columns = {band: [] for band in plan.bands}
    rows = 0
    for batch in pq.ParquetFile(plan.parts / f"{index:05d}.docs.parquet", pre_buffer=False).iter_batches(
            READ_ROWS, columns=["text", "url"]):
        texts = batch.column("text").to_pylist()
        if plan.url:
            columns[URL].append(page_hashes(batch.column("url").to_pylist(), rows))
        if plan.exact:
            columns[EXACT].append(exact_hashes(texts))
        if plan.near:
            bands = band_hashes(signatures(texts, m.bands * m.rows, m.ngram, m.seed), m.bands, m.rows)
            for i in range(m.bands):
                columns[f"b{i:02d}"].append(bands[:, i])
        rows += len(texts)
    ids = (np.uint64(index) << np.uint64(32)) | np.arange(rows, dtype=np.uint64)
    final = plan.work / "signs" / f"{index:05d}"
    tmp = plan.work / "signs" / f".{index:05d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for band, parts in columns.items():
        hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        ids_here = ids
        if band == URL:  # (row, hash) of the documents that have a web URL
            hashes, ids_here = hashes.reshape(-1, 2).T[1], ids[hashes.reshape(-1, 2).T[0].astype(np.int64)]
        bucket = (hashes >> np.uint64(40)) % np.uint64(plan.buckets)
        for k in range(plan.buckets):
            chosen = bucket == k
            np.save(tmp / f"{band}-{k:03d}.npy", np.stack([hashes[chosen], ids_here[chosen]]))
    os.replace(tmp, final)  # the folder under its final name marks the part signed
    return time.process_time() - t0


# ---------------------------------------------------------------- 2. pair


def pair_bucket(plan: DedupPlan, task: tuple[str, int]) -> float:
    """Stage 2 for one band and bucket: every document linked to the first (lowest id) of those
    whose band hash equals its own. Returns CPU seconds."""
    t0 = time.process_time()
    band, k = task
    loaded = [np.load(plan.work / "signs" / f"{i:05d}" / f"{band}-{k:03d}.npy") for i in plan.indexes]
    both = np.concatenate(loaded, axis=1) if loaded else np.zeros((2, 0), np.uint64)
    hashes, ids = both
    order = np.lexsort((ids, hashes))
    hashes, ids = hashes[order], ids[order]
    starts = np.ones(len(hashes), dtype=bool)
    starts[1:] = hashes[1:] != hashes[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(hashes)), 0))
    pairs = np.stack([ids[first][~starts], ids[~starts]], axis=1)
    _save_atomic(plan.work / "pairs" / f"{band}-{k:03d}.npy", pairs)
    return time.process_time() - t0


def page_hashes(urls: list[str], first_row: int) -> np.ndarray:
    """(row, hash) pairs, flattened, of the documents with an http(s) URL: 64 bits of the SHA-1
    of the URL as :func:`page_url` spells it."""
    import hashlib

    out = []
    for row, url in enumerate(urls, first_row):
        page = page_url(url or "")
        if page:
            out += [row, int.from_bytes(hashlib.sha1(page.encode("utf-8")).digest()[:8], "little")]
    return np.array(out, dtype=np.uint64)


_INDEX_FILE = re.compile(r"/(index|default)\.(html?|php|aspx?)$", re.IGNORECASE)


def page_url(url: str) -> str | None:
    """One spelling of a page's URL: normalised (lower-case host, no fragment or default port,
    sorted query) and a directory's index file named or not (``/docs/`` = ``/docs/index.html``,
    as web servers serve them); None for what is not an http(s) URL.

    >>> page_url("HTTP://Example.com:80/docs/Index.HTML#intro") == page_url("http://example.com/docs/")
    True
    """
    from lmforge.collect.urls import normalize_url

    url = normalize_url(url, sort_query=True)
    if url is None:
        return None
    path, sep, query = url.partition("?")
    return _INDEX_FILE.sub("/", path) + sep + query


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


# ---------------------------------------------------------------- 3. cluster


def cluster(plan: DedupPlan) -> None:
    """Stage 3: exact clusters first, then near clusters among what exact dedup kept; in each,
    the first document in the output order is kept. Writes ``removed/NNNNN.parquet`` (row, step,
    reason, detail: the kept document's id) and ``removed/counts.json``."""
    t0 = time.process_time()
    removed: dict[int, tuple[str, str, int]] = {}
    counts = dict.fromkeys(STEPS, 0)
    names: dict[int, str] = {}
    for step in STEPS:
        pairs = _instead_of_removed(_load_pairs(plan, plan.bands_of(step)), removed)
        keys = _keys(plan, np.unique(pairs))
        for node, kept in _losers(pairs, keys).items():
            removed[node] = (f"{step}_dedup", REASONS[step], kept)
            names[kept] = keys[kept][-1]
            counts[step] += 1
    _write_removed(plan, removed, names, counts, time.process_time() - t0)


def _instead_of_removed(pairs: np.ndarray, removed: dict) -> np.ndarray:
    """``pairs`` with each exact duplicate replaced by the document kept for it (the same text,
    so the same links), without the pairs of a document removed for its URL (its text may
    differ) or that become a document and itself."""
    if not removed or not len(pairs):
        return pairs
    gone = np.array(sorted(removed), dtype=np.uint64)
    kept = np.array([removed[n][2] if removed[n][0] == "exact_dedup" else n for n in gone.tolist()], dtype=np.uint64)
    at = np.minimum(np.searchsorted(gone, pairs), len(gone) - 1)
    hit = gone[at] == pairs
    by_url = hit & (kept[at] == pairs)
    pairs = np.where(hit, kept[at], pairs)[~by_url.any(axis=1)]
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)


def _load_pairs(plan: DedupPlan, bands: list[str]) -> np.ndarray:
    files = [plan.work / "pairs" / f"{band}-{k:03d}.npy" for band in bands for k in range(plan.buckets)]
    loaded = [np.load(f) for f in files]
    pairs = np.concatenate(loaded) if loaded else np.zeros((0, 2), np.uint64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def components(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, label of each node): nodes linked through ``pairs`` share a label.

    Label propagation with pointer jumping: each round every node takes the lowest label among
    its links, then its label's label; a few rounds even for long chains.
    """
    nodes, inverse = np.unique(pairs, return_inverse=True)
    a, b = inverse.reshape(-1, 2).T if len(pairs) else (np.zeros(0, np.int64),) * 2
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, label):
            return nodes, label
        label = new


def _losers(pairs: np.ndarray, keys: dict[int, tuple]) -> dict[int, int]:
    """{removed document: the document kept in its cluster}."""
    nodes, label = components(pairs)
    kept: dict[int, int] = {}
    for node, group in zip(nodes.tolist(), label.tolist()):
        best = kept.get(group)
        if best is None or keys[node] < keys[best]:
            kept[group] = node
    return {node: kept[group] for node, group in zip(nodes.tolist(), label.tolist()) if kept[group] != node}


def _keys(plan: DedupPlan, nodes: np.ndarray) -> dict[int, tuple]:
    """The output-order key (url first for a crawl, else the input order) and id of each node,
    read from the parts that hold them."""
    import pyarrow.parquet as pq

    from lmforge.clean.outputs import order_key

    key = order_key(plan.by_url)
    out = {}
    parts = nodes >> np.uint64(32)
    for index in np.unique(parts).tolist():
        rows = (nodes[parts == index] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        t = pq.read_table(plan.parts / f"{index:05d}.docs.parquet",
                          columns=["id", "url", "order_file", "order_record"]).take(rows).to_pydict()
        for row, id_, url, f, r in zip(rows.tolist(), t["id"], t["url"], t["order_file"], t["order_record"]):
            out[(index << 32) | row] = (*key(url, (f, r)), id_)
    return out


def _write_removed(plan: DedupPlan, removed: dict, names: dict, counts: dict, seconds: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = plan.work / f".removed.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    by_part: dict[int, list] = {}
    for node, (step, reason, kept) in sorted(removed.items()):
        by_part.setdefault(node >> 32, []).append((node & 0xFFFFFFFF, step, reason, names[kept]))
    for index, rows in by_part.items():
        row, step, reason, detail = zip(*rows)
        pq.write_table(pa.table({"row": list(row), "step": list(step), "reason": list(reason),
                                 "detail": list(detail)}), tmp / f"{index:05d}.parquet")
    (tmp / "counts.json").write_text(json.dumps({**counts, "seconds": seconds}))
    os.replace(tmp, plan.work / "removed")


def _counts(plan: DedupPlan, docs: int, seconds: dict) -> dict:
    done = plan.work / "removed" / "counts.json"
    saved = json.loads(done.read_text()) if done.exists() else {**dict.fromkeys(STEPS, 0), "seconds": 0.0}
    share = (seconds.get("sign", 0.0) + seconds.get("pair", 0.0) + saved["seconds"]) / max(len(plan.bands), 1)
    out, left = {}, docs
    for step in STEPS:
        bands = len(plan.bands_of(step))
        if bands:
            out[f"{step}_dedup"] = {"in": left, "out": left - saved[step], f"dropped_{REASONS[step]}": saved[step],
                                    "seconds": share * bands}
            left -= saved[step]
    return out


def process_map(workers: int, executor: str = "local") -> Callable[[Callable, Iterable], list]:
    """A ``map`` over the stage's executor (lmforge/executor.py: spawned processes that die with
    this one, or Ray tasks); the results come in no fixed order, which the callers sum."""
    from lmforge.executor import map_unordered

    return lambda fn, items: list(map_unordered(fn, items, workers, executor))
