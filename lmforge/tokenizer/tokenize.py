"""Stage `tokenize`: encode ``docs/*.parquet`` into llm.c token shards, one shard set per source.

Every document becomes ``[bos] + encode(text)``; documents go to train or val by a seeded hash
of their id (stable whatever the file order or worker count). A first, cheap pass over the
``id`` and ``source`` columns fixes the split (and makes sure a source with >= 2 documents has
one val document); the second streams batches of texts through a process pool, in order, into
``tokens/<source>/{train,val}_NNNNNN.bin``. ``tokens/manifest.json`` is written last.
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.rundir import write_json_atomic
from lmforge.tokenizer.corpus import doc_files, doc_hash, iter_batches
from lmforge.tokenizer.shards import StreamingShard, dtype_for_vocab

MANIFEST = "manifest.json"
IN_FLIGHT = 4  # tasks per worker queued or running: workers never wait for the main process


# -- the split -------------------------------------------------------------------------------
def plan_split(files: list[Path], seed: int, val_fraction: float) -> tuple[dict[str, int], set[str]]:
    """Count documents per source and pick the ids forced into val: one per source with >= 2
    documents whose hash put none there (its smallest hash), and at least one overall."""
    counts: dict[str, int] = collections.Counter()
    has_val: set[str] = set()
    smallest: dict[str, tuple[float, str]] = {}
    for batch in iter_batches(files, ["id", "source"], batch_size=65536):
        for doc_id, source in zip(batch["id"], batch["source"]):
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


def is_val(doc_id: str, seed: int, val_fraction: float, forced: set[str]) -> bool:
    return doc_hash(seed, doc_id) < val_fraction or doc_id in forced


# -- tasks (main process) --------------------------------------------------------------------
TASK_BYTES = 256 * 1024  # text per task, ~15 ms of encoding: the last task leaves the others idle briefly
READ_ROWS = 1024  # documents per Parquet read: bounds the text the main process holds


def _tasks(files: list[Path]) -> Iterator[tuple[list[str], list[str], bytes, np.ndarray]]:
    """Tasks of about TASK_BYTES of text each, in input order: (ids, sources, the texts' UTF-8
    bytes end to end, offsets into them). The main process never makes a Python string of a
    text, and a task pickles as one bytes object and one array (no per-document work)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for batch in iter_batches(files, ["id", "source", "text"], batch_size=READ_ROWS, arrow_columns=("text",)):
        text = batch["text"]
        if text.null_count:
            text = pc.fill_null(text, "")
        if text.type != pa.large_string():
            text = text.cast(pa.large_string())  # int64 offsets whatever the file's string type
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
        data = memoryview(text.buffers()[2] or b"")
        rel = offsets - offsets[0]
        start = 0
        while start < len(text):
            # the most documents that fit in TASK_BYTES, and at least one
            end = max(start + 1, int(np.searchsorted(rel, rel[start] + TASK_BYTES, side="right")) - 1)
            yield (batch["id"][start:end], batch["source"][start:end],
                   bytes(data[offsets[start]:offsets[end]]), rel[start:end + 1] - rel[start])
            start = end


# -- encoding (runs in the worker processes) ---------------------------------------------------
_WORKER: dict = {}


def _set_worker(tok, seed: int, val_fraction: float, forced: set[str]) -> None:
    tok.encoding  # build tiktoken's tables once, before any fork
    _WORKER.update(tok=tok, seed=seed, val_fraction=val_fraction, forced=forced,
                   bos=np.array([tok.bos_id], dtype=np.uint32), dtype=dtype_for_vocab(tok.vocab_size))


def _init_worker(tokenizer_dir: str, seed: int, val_fraction: float, forced: set[str]) -> None:
    """Pool initializer where processes are spawned, not forked: load the tokenizer here."""
    from lmforge.tokenizer.bpe import Tokenizer

    _set_worker(Tokenizer.load(tokenizer_dir), seed, val_fraction, forced)


def _encode_task(task: tuple) -> dict[tuple[str, str], tuple[np.ndarray, int, int]]:
    """One task -> {(source, split): (tokens with a BOS before each doc, docs, bytes)}."""
    ids, sources, data, offsets = task
    w = _WORKER
    encode, bos = w["tok"].encoding.encode_to_numpy, w["bos"]
    parts: dict[tuple[str, str], list] = collections.defaultdict(lambda: [[], 0, 0])
    offsets = offsets.tolist()
    for i, (doc_id, source) in enumerate(zip(ids, sources)):
        a, b = offsets[i], offsets[i + 1]
        split = "val" if is_val(doc_id, w["seed"], w["val_fraction"], w["forced"]) else "train"
        part = parts[(source, split)]
        # disallowed_special=(): special-token text in a document is ordinary text, as in encode_ordinary
        part[0] += (bos, encode(data[a:b].decode("utf-8", "replace"), disallowed_special=()))
        part[1] += 1
        part[2] += b - a
    return {key: (np.concatenate(arrays, dtype=w["dtype"], casting="same_kind"), docs, nbytes)
            for key, (arrays, docs, nbytes) in parts.items()}


# -- shard writing ---------------------------------------------------------------------------
@dataclass
class TokenShardWriter:
    """Writes one (source, split) stream as shards of ``shard_tokens`` tokens, piece by piece."""

    out_dir: Path
    rel_dir: str
    split: str
    shard_tokens: int
    vocab_size: int
    bos_id: int
    shards: list[dict] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    _open: StreamingShard | None = None
    _open_docs: int = 0

    def add(self, tokens: np.ndarray, documents: int, nbytes: int) -> None:
        self.documents += documents
        self.bytes += nbytes
        while tokens.size:
            if self._open is None:
                rel = f"{self.rel_dir}/{self.split}_{len(self.shards):06d}.bin"
                self._open, self._open_docs = StreamingShard(self.out_dir / rel, self.vocab_size), 0
                self.shards.append({"path": rel, "tokens": 0, "documents": 0})
            piece = tokens[: self.shard_tokens - self._open.count]
            self._open.write(piece)
            # A document belongs to the shard that holds its BOS (it may run on into the next).
            self._open_docs += int(np.count_nonzero(piece == self.bos_id))
            tokens = tokens[piece.size:]
            if self._open.count == self.shard_tokens:
                self._finish()

    def close(self) -> None:
        if self._open is not None:
            self._finish()

    def abort(self) -> None:
        if self._open is not None:
            self._open.abort()
            self._open = None

    def _finish(self) -> None:
        self._open.close()
        self.shards[-1].update(tokens=self._open.count, documents=self._open_docs)
        self._open = None

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)


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
    writers: dict[tuple[str, str], TokenShardWriter] = {}
    init = (str(tokenizer_dir), seed, val_fraction, forced)
    _set_worker(tok, *init[1:])  # here: used directly by one worker, inherited by forked ones
    try:
        for result in _encoded_tasks(files, init, workers or os.cpu_count() or 1, sum(counts.values())):
            for (source, split), (tokens, docs, nbytes) in result.items():
                key = (source, split)
                if key not in writers:
                    writers[key] = TokenShardWriter(out_dir, names[source], split, shard_tokens, tok.vocab_size,
                                                    tok.bos_id)
                writers[key].add(tokens, docs, nbytes)
    except BaseException:
        for w in writers.values():
            w.abort()  # no half-written shard left behind, not even under its temporary name
        raise
    for w in writers.values():
        w.close()
    write_json_atomic(out_dir / MANIFEST, _manifest(tok, counts, writers, tokenizer_file_sha256(tokenizer_dir)))
    return _stats(counts, writers)


def _encoded_tasks(files: list[Path], init: tuple, workers: int, total_docs: int) -> Iterator[dict]:
    """Encoded tasks in input order; at most IN_FLIGHT x workers tasks in flight (bounded memory)."""
    from tqdm import tqdm

    tasks = _tasks(files)
    bar = tqdm(total=total_docs, unit="doc", desc="tokenize", disable=None, mininterval=2)
    if workers == 1:
        for task in tasks:
            bar.update(len(task[0]))
            yield _encode_task(task)
        bar.close()
        return
    import multiprocessing as mp

    # fork where there is one: workers start in milliseconds with the tokenizer already loaded,
    # and a caller's script needs no `if __name__ == "__main__"` guard; they use only numpy and
    # tiktoken, none of the parent's (pyarrow) threads.
    fork = "fork" in mp.get_all_start_methods()
    with mp.get_context("fork" if fork else "spawn").Pool(
            workers, initializer=None if fork else _init_worker, initargs=() if fork else init) as pool:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append((len(task[0]), pool.apply_async(_encode_task, (task,))))
            if len(pending) >= IN_FLIGHT * workers:
                n, res = pending.popleft()
                bar.update(n)
                yield res.get()
        while pending:
            n, res = pending.popleft()
            bar.update(n)
            yield res.get()
    bar.close()


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
    return tokenize_docs(files, rd.tokenizer, out, cfg.seed, tcfg.val_fraction, tcfg.shard_tokens, tcfg.workers)
