"""Stage `tokenize`: encode ``docs/*.parquet`` into llm.c token shards, one shard set per source.

Every document becomes ``[bos] + encode(text)``; documents go to train or val by a seeded hash
of their URL, else their id (corpus.doc_key; stable whatever the file order, worker count or
crawl). A first, cheap pass over the ``id``, ``url`` and ``source`` columns fixes the split
(and makes sure a source with >= 2 documents has one val document). Then the main process reads
the files once, cuts them into tasks of about TASK_BYTES of text, hands tasks to ``workers - 1``
worker processes (workers.py), encodes a task itself whenever no answer is waiting, and writes
the token arrays, in input order, into ``tokens/<source>/{train,val}_NNNNNN.bin`` (shards.py).
``tokens/manifest.json`` is written last.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.rundir import write_json_atomic
from lmforge.tokenizer.corpus import batch_keys, doc_files, doc_hash, doc_key, iter_batches, open_docs
from lmforge.tokenizer.shards import TokenShardWriter, dtype_for_vocab
from lmforge.tokenizer.workers import IN_FLIGHT, Job, Workers

MANIFEST = "manifest.json"


# -- the split -------------------------------------------------------------------------------
def plan_split(files: list[Path], seed: int, val_fraction: float) -> tuple[dict[str, int], set[str]]:
    """Count documents per source and pick the keys (corpus.doc_key) forced into val: one per
    source with >= 2 documents whose hash put none there (its smallest hash), and at least one overall."""
    counts: dict[str, int] = collections.Counter()
    has_val: set[str] = set()
    smallest: dict[str, tuple[float, str]] = {}
    for batch in iter_batches(files, ["id", "url", "source"], batch_size=65536):
        for doc_id, source in zip(batch_keys(batch), batch["source"]):
            h = doc_hash(seed, doc_id)
            counts[source] += 1
            if h < val_fraction:
                has_val.add(source)
            if source not in smallest or h < smallest[source][0]:
                smallest[source] = (h, doc_id)
    if val_fraction <= 0:
        return dict(counts), set()
    forced = {smallest[s][1] for s, n in counts.items() if n >= 2 and s not in has_val}
    if not has_val and not forced and sum(counts.values()) >= 2:
        forced = {min(smallest.values())[1]}  # sources of one document each: still one val document
    return dict(counts), forced


def is_val(key: str, seed: int, val_fraction: float, forced: set[str]) -> bool:
    """Whether the document of this key (corpus.doc_key) is in the validation split."""
    return doc_hash(seed, key) < val_fraction or key in forced


# -- tasks: read once, here --------------------------------------------------------------------
TASK_BYTES = 128 * 1024  # text per task, ~8 ms of encoding: the last one leaves the other processes idle briefly
READ_ROWS = 128  # documents per Parquet read: the first task goes out after one read (a row group's decoding)
COLUMNS = ["id", "url", "source", "text"]


def _tasks(files: list[Path], fine_tail: int = 0) -> Iterator:
    """Arrow record batches (id, url, source, text; strings, defaults filled in) of about TASK_BYTES
    of text, in input order. Each file is read and decoded once, by this process: the workers
    are sent their batches (Arrow IPC, a copy of the text) and never open a file, so two
    workers do not decode the same Parquet pages twice. The last ``fine_tail`` bytes of text
    go in tasks a quarter the size: the processes then finish within a short task of one another."""
    for f, path in enumerate(files):
        pf = open_docs(path)  # pre-buffered: one read of the columns, faster than a row group at a time
        names = pf.schema_arrow.names
        offset, rows = 0, pf.metadata.num_rows
        # use_threads=False: one process, one core (the workers have the others)
        for batch in pf.iter_batches(batch_size=READ_ROWS, columns=[c for c in COLUMNS if c in names],
                                     use_threads=False):
            last = f == len(files) - 1 and offset + batch.num_rows == rows
            yield from _cut(_complete(batch, path.name, offset), fine_tail if last else 0)
            offset += batch.num_rows


def _complete(batch, file_name: str, offset: int):
    """The batch as (id, url, source, text) strings, with corpus.iter_batches's defaults: a
    missing id is ``file:row``, a missing url or text empty, a missing source ``default``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def column(name):
        return batch.column(name) if name in batch.schema.names else pa.nulls(batch.num_rows, pa.string())

    ids = column("id")
    if ids.null_count or ids.type != pa.string():
        ids = pa.array([f"{file_name}:{offset + i}" if v is None else str(v) for i, v in enumerate(ids.to_pylist())],
                       pa.string())
    url = pc.fill_null(column("url").cast(pa.string()), "")
    source = pc.fill_null(column("source").cast(pa.string()), "default")
    text = pc.fill_null(column("text").cast(pa.string()), "")
    return pa.record_batch([ids, url, source, text], names=COLUMNS)


def _cut(batch, fine_tail: int = 0) -> Iterator:
    """Slices of ``batch`` holding about TASK_BYTES of text each (a longer document alone), a
    quarter of that in its last ``fine_tail`` bytes."""
    import pyarrow.compute as pc

    ends = np.cumsum(pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False))
    start, rows = 0, batch.num_rows
    while start < rows:
        before = ends[start - 1] if start else 0
        size = TASK_BYTES // 4 if ends[-1] - before <= fine_tail else TASK_BYTES
        stop = min(rows, max(start + 1, int(np.searchsorted(ends, before + size)) + 1))
        yield batch.slice(start, stop - start)
        start = stop


# -- encoding (this process and the workers) -------------------------------------------------
_WORKER: dict = {}


def _set_worker(tok, seed: int, val_fraction: float, forced: set[str]) -> None:
    _WORKER.update(tok=tok, seed=seed, val_fraction=val_fraction, forced=forced,
                   bos=np.array([tok.bos_id], dtype=np.uint32), dtype=dtype_for_vocab(tok.vocab_size))


def _load_tokenizer(tokenizer_dir: str) -> None:
    """A worker's start: the tokenizer (inherited when forked) and tiktoken's tables, built while
    the main process reads the first tasks."""
    from lmforge.tokenizer.bpe import Tokenizer

    _WORKER["tok"] = _WORKER.get("tok") or Tokenizer.load(tokenizer_dir)
    _WORKER["tok"].encoding


def _configure(seed: int, val_fraction: float, forced: set[str]) -> None:
    _set_worker(_WORKER["tok"], seed, val_fraction, forced)


def _encode_batch(batch) -> dict[tuple[str, str], tuple[np.ndarray, int, int]]:
    """A task -> {(source, split): (tokens with a BOS before each doc, docs, bytes)}."""
    import pyarrow.compute as pc

    w = _WORKER
    encode, bos = w["tok"].encoding.encode_to_numpy, w["bos"]
    ids, urls, sources, texts = (batch.column(name).to_pylist() for name in COLUMNS)
    sizes = pc.binary_length(batch.column("text")).to_pylist()
    parts: dict[tuple[str, str], list] = collections.defaultdict(lambda: [[], 0, 0])
    for doc_id, url, source, text, size in zip(ids, urls, sources, texts, sizes):
        split = "val" if is_val(doc_key(doc_id, url), w["seed"], w["val_fraction"], w["forced"]) else "train"
        part = parts[(source, split)]
        # disallowed_special=(): special-token text in a document is ordinary text (encode_ordinary)
        part[0] += (bos, encode(text, disallowed_special=()))
        part[1] += 1
        part[2] += size
    return {key: (np.concatenate(arrays, dtype=w["dtype"], casting="same_kind"), docs, nbytes)
            for key, (arrays, docs, nbytes) in parts.items()}


def tokenizer_file_sha256(tokenizer_dir: str | os.PathLike) -> str:
    import hashlib

    from lmforge.tokenizer.bpe import TOKENIZER_FILE

    return hashlib.sha256((Path(tokenizer_dir) / TOKENIZER_FILE).read_bytes()).hexdigest()


def source_dirname(source: str) -> str:
    """A source name as a safe folder name ("web/en" -> "web_en")."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", source) or "default"


# -- the stage -------------------------------------------------------------------------------
def tokenize_docs(files: list[Path], tokenizer_dir: Path, out_dir: Path, seed: int, val_fraction: float,
                  shard_tokens: int, workers: int = 1) -> dict:
    """Encode ``files`` into ``out_dir`` (which should be empty) and return the stats."""
    from lmforge.tokenizer.bpe import Tokenizer

    tok = Tokenizer.load(tokenizer_dir)
    counts, forced = plan_split(files, seed, val_fraction)
    if not counts:
        raise LmforgeError("no documents to tokenize in docs/; check the clean stage (stats/clean.json)")
    names = {s: source_dirname(s) for s in counts}
    if len(set(names.values())) < len(names):
        raise LmforgeError(f"sources {sorted(counts)} map to clashing folder names; rename them in the clean stage")
    _set_worker(tok, seed, val_fraction, forced)  # forked workers inherit the tokenizer; spawned ones load it
    job = Job(_load_tokenizer, str(tokenizer_dir), _configure, _encode_batch)
    with Workers((workers or os.cpu_count() or 1) - 1, job) as pool:
        pool.configure(seed, val_fraction, forced)
        writers = _write(_encoded(files, pool, sum(counts.values())), out_dir, names, shard_tokens, tok)
    write_json_atomic(out_dir / MANIFEST, _manifest(tok, counts, writers, tokenizer_file_sha256(tokenizer_dir)))
    return _stats(counts, writers)


def _write(results: Iterator[dict], out_dir: Path, names: dict[str, str], shard_tokens: int, tok) -> dict:
    """Every result into the shards of its (source, split); all closed, or none left behind."""
    writers: dict[tuple[str, str], TokenShardWriter] = {}
    try:
        for result in results:
            for (source, split), (tokens, docs, nbytes) in result.items():
                if (source, split) not in writers:
                    writers[(source, split)] = TokenShardWriter(out_dir, names[source], split, shard_tokens,
                                                                tok.vocab_size, tok.bos_id)
                writers[(source, split)].add(tokens, docs, nbytes)
    except BaseException:
        for w in writers.values():
            w.abort()  # no half-written shard left behind, not even under its temporary name
        raise
    for w in writers.values():
        w.close()
    return writers


def _encoded(files: list[Path], pool: Workers, total_docs: int) -> Iterator[dict]:
    """Encoded tasks in input order, from this process alone or with the pool's workers."""
    from tqdm import tqdm

    bar = tqdm(total=total_docs, unit="doc", desc="tokenize", disable=None, mininterval=2)
    try:
        if not pool.conns:
            for batch in _tasks(files):
                yield _encode_batch(batch)
                bar.update(batch.num_rows)
        else:
            tail = IN_FLIGHT * (len(pool.conns) + 1) * TASK_BYTES  # about the tasks in flight at the end
            for rows, result in pool.results(_tasks(files, tail), _encode_batch):
                yield result
                bar.update(rows)
    finally:
        bar.close()
        _WORKER.clear()


def _manifest(tok, counts: dict[str, int], writers: dict, tokenizer_sha256: str) -> dict:
    sources = {}
    for source in sorted(counts):
        sources[source] = {split: writers[(source, split)].shards if (source, split) in writers else []
                           for split in ("train", "val")}
    return {"version": 1, "vocab_size": tok.vocab_size, "bos_id": tok.bos_id,
            "dtype": np.dtype(dtype_for_vocab(tok.vocab_size)).name, "sources": sources,
            # Which tokenizer made these ids: a reader can refuse shards of a retrained tokenizer.
            "tokenizer_sha256": tokenizer_sha256}


def _stats(counts: dict[str, int], writers: dict) -> dict:
    per_source: dict[str, dict] = {}
    total = {"documents": 0, "tokens": 0, "bytes": 0}
    for (source, split), w in sorted(writers.items()):
        entry = {"documents": w.documents, "tokens": w.tokens, "bytes": w.bytes, "shards": len(w.shards),
                 "bytes_per_token": round(w.bytes / max(1, w.tokens - w.documents), 4)}
        per_source.setdefault(source, {})[split] = entry
        for k in total:
            total[k] += entry[k]
    total["bytes_per_token"] = round(total["bytes"] / max(1, total["tokens"] - total["documents"]), 4)
    return {**total, "sources": per_source}


def run_stage(cfg, rd) -> dict:
    tcfg = cfg.tokenizer
    files = doc_files(rd.docs)
    out = rd.reset_dir(rd.tokens)
    stats = tokenize_docs(files, rd.tokenizer, out, cfg.seed, tcfg.val_fraction, tcfg.shard_tokens, tcfg.workers)
    stats["languages"] = language_compression(files, rd.tokenizer, cfg.seed, tcfg.val_fraction)
    return stats


def language_compression(files: list[Path], tokenizer_dir: Path, seed: int, val_fraction: float) -> dict:
    """Bytes per token of each language's held-out documents (all documents when none is held
    out): how well the one tokenizer serves each language of the corpus."""
    from lmforge.tokenizer.bpe import Tokenizer
    from lmforge.tokenizer.stats import tokenizer_stats

    tok = Tokenizer.load(tokenizer_dir)
    split = "val" if val_fraction > 0 else "all"
    return {lang: {**entry, "split": split}
            for lang, entry in tokenizer_stats(tok, files, seed, val_fraction, split, longest=0)["languages"].items()}
