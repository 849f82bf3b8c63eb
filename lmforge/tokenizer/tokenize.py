"""Stage `tokenize`: encode ``docs/*.parquet`` into llm.c token shards, one shard set per source.

Every document becomes ``[bos] + encode(text)``; documents go to train or val by a seeded hash
of their id (stable whatever the file order or worker count). A first, cheap pass over the
``id`` and ``source`` columns fixes the split (and makes sure a source with >= 2 documents has
one val document). Then the main process cuts the files into row ranges of about TASK_BYTES of
text (from the Parquet footers alone) and hands them to worker processes, which read their own
rows and send back one token array per (source, split); the main process writes the arrays, in
input order, into ``tokens/<source>/{train,val}_NNNNNN.bin``. ``tokens/manifest.json`` is written last.
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
TASK_BYTES = 128 * 1024  # text per task, ~8 ms of encoding: the last one leaves the other workers idle briefly
READ_ROWS = 256  # documents per Parquet read in a worker: bounds the text each worker holds
IN_FLIGHT = 2  # tasks per worker sent and not yet answered: one running, one ready (a short tail)
COLUMNS = ["id", "source", "text"]


def _ranges(files: list[Path]) -> Iterator[tuple[int, int, int]]:
    """(file index, first row, end row) ranges of about TASK_BYTES of text, in input order, from
    each row group's average text size in the Parquet footer: the main process reads no text."""
    import pyarrow.parquet as pq

    for f, path in enumerate(files):
        meta = pq.ParquetFile(path).metadata
        paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if "text" not in paths:
            raise LmforgeError(f"{path}: no `text` column (columns: {', '.join(sorted(paths))}); "
                               "documents need id, source and text")
        row = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            rows, size = group.num_rows, group.column(paths.index("text")).total_uncompressed_size
            step = max(1, round(rows * TASK_BYTES / max(size, 1)))
            for first in range(row, row + rows, step):
                yield f, first, min(first + step, row + rows)
            row += rows


# -- encoding (runs in the worker processes) ---------------------------------------------------
class _Rows:
    """The rows of the docs files, read forward batch by batch: a worker's ranges come in input
    order, so each worker streams each file once and holds one batch (READ_ROWS documents)."""

    def __init__(self, files: list[Path]):
        self.files, self.file, self.batches = files, -1, iter(())
        self.batch: dict = {}
        self.start = self.end = 0  # rows of self.file that self.batch holds

    def take(self, f: int, start: int, end: int) -> tuple[list[str], list[str], list]:
        """ids, sources and texts (Arrow arrays) of rows start..end of file f."""
        if f != self.file or start < self.start:
            self.file, self.start, self.end = f, 0, 0
            self.batches = iter_batches([self.files[f]], COLUMNS, batch_size=READ_ROWS, arrow_columns=("text",))
        ids, sources, texts = [], [], []
        while start < end:
            while start >= self.end:
                self.batch = next(self.batches)
                self.start, self.end = self.end, self.end + len(self.batch["id"])
            a, b = start - self.start, min(end, self.end) - self.start
            ids += self.batch["id"][a:b]
            sources += self.batch["source"][a:b]
            texts.append(self.batch["text"][a:b])
            start = self.start + b
        return ids, sources, texts


_WORKER: dict = {}


def _set_worker(tok, files: list[Path], seed: int, val_fraction: float, forced: set[str]) -> None:
    tok.encoding  # build tiktoken's tables once, before any fork
    _WORKER.update(tok=tok, rows=_Rows(files), seed=seed, val_fraction=val_fraction, forced=forced,
                   bos=np.array([tok.bos_id], dtype=np.uint32), dtype=dtype_for_vocab(tok.vocab_size))


def _encode_range(f: int, start: int, end: int) -> dict[tuple[str, str], tuple[np.ndarray, int, int]]:
    """Rows start..end of file f -> {(source, split): (tokens with a BOS before each doc, docs, bytes)}."""
    import pyarrow.compute as pc

    w = _WORKER
    encode, bos = w["tok"].encoding.encode_to_numpy, w["bos"]
    ids, sources, arrays = w["rows"].take(f, start, end)
    texts = [t for a in arrays for t in a.to_pylist()]
    sizes = [n for a in arrays for n in pc.binary_length(a).to_pylist()]
    parts: dict[tuple[str, str], list] = collections.defaultdict(lambda: [[], 0, 0])
    for doc_id, source, text, size in zip(ids, sources, texts, sizes):
        split = "val" if is_val(doc_id, w["seed"], w["val_fraction"], w["forced"]) else "train"
        part = parts[(source, split)]
        # disallowed_special=(): special-token text in a document is ordinary text (encode_ordinary)
        part[0] += (bos, encode(text or "", disallowed_special=()))
        part[1] += 1
        part[2] += size or 0
    return {key: (np.concatenate(arrays, dtype=w["dtype"], casting="same_kind"), docs, nbytes)
            for key, (arrays, docs, nbytes) in parts.items()}


def _worker_main(conn, init: tuple | None) -> None:
    """A worker process: answer each (task number, range) with (task number, result, error)."""
    import signal

    import pyarrow as pa

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    pa.set_cpu_count(1)  # one worker, one core: Arrow's decoding threads would compete with the others
    if init is not None:  # spawned, not forked: load the tokenizer here
        from lmforge.tokenizer.bpe import Tokenizer

        tokenizer_dir, *rest = init
        _set_worker(Tokenizer.load(tokenizer_dir), *rest)
    while (task := conn.recv()) is not None:
        number, rng = task
        try:
            conn.send((number, _encode_range(*rng), None))
        except Exception as exc:  # noqa: BLE001 - handed to the main process, which raises it
            conn.send((number, None, _picklable(exc)))


def _picklable(exc: Exception) -> Exception:
    import pickle
    import traceback

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError("".join(traceback.format_exception(exc)))


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
    init = (str(tokenizer_dir), files, seed, val_fraction, forced)
    _set_worker(tok, *init[1:])  # here: used directly by one worker, inherited by forked ones
    try:
        for result in _encoded(files, init, workers or os.cpu_count() or 1, sum(counts.values())):
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


def _encoded(files: list[Path], init: tuple, workers: int, total_docs: int) -> Iterator[dict]:
    """Encoded ranges in input order, from this process or from a pool of worker processes."""
    from tqdm import tqdm

    bar = tqdm(total=total_docs, unit="doc", desc="tokenize", disable=None, mininterval=2)
    try:
        if workers == 1:
            for rng in _ranges(files):
                yield _encode_range(*rng)
                bar.update(rng[2] - rng[1])
        else:
            for rng, result in _pool(_ranges(files), init, workers):
                yield result
                bar.update(rng[2] - rng[1])
    finally:
        bar.close()
        _WORKER.clear()


def _pool(ranges: Iterator[tuple], init: tuple, workers: int) -> Iterator[tuple[tuple, dict]]:
    """(range, result) in input order from ``workers`` processes, each sent up to IN_FLIGHT
    ranges ahead; at most workers x IN_FLIGHT results are held (bounded memory).

    One pipe per worker and no helper threads (multiprocessing.Pool's three threads cost the
    main process about 1 ms of CPU per task): tasks are a few bytes, so a send never blocks,
    and results are read as they come (``connection.wait``), so a worker never waits to send.
    """
    import multiprocessing as mp

    # fork where there is one: workers start in milliseconds with the tokenizer already loaded,
    # and a caller's script needs no `if __name__ == "__main__"` guard.
    fork = "fork" in mp.get_all_start_methods()
    ctx = mp.get_context("fork" if fork else "spawn")
    conns, procs = [], []
    try:
        for _ in range(workers):
            conn, child = ctx.Pipe()
            procs.append(ctx.Process(target=_worker_main, args=(child, None if fork else init), daemon=True))
            procs[-1].start()
            child.close()
            conns.append(conn)
        yield from _dispatch(ranges, conns, procs)
        for conn in conns:
            conn.send(None)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in conns:
            conn.close()


def _dispatch(ranges: Iterator[tuple], conns: list, procs: list) -> Iterator[tuple[tuple, dict]]:
    """Keep every worker up to IN_FLIGHT tasks ahead; yield (range, result) in task order."""
    load, sent, done, ready, task_of = [0] * len(conns), 0, 0, {}, {}
    more = True
    while True:
        while more and min(load) < IN_FLIGHT:  # top up the least loaded worker
            rng = next(ranges, None)
            if rng is None:
                more = False
                break
            w = load.index(min(load))
            conns[w].send((sent, rng))
            load[w], task_of[sent], sent = load[w] + 1, rng, sent + 1
        while done in ready:
            yield task_of.pop(done), ready.pop(done)
            done += 1
        if done == sent and not more:
            return
        for w, number, result in _receive(conns, procs):
            ready[number] = result
            load[w] -= 1


def _receive(conns: list, procs: list) -> Iterator[tuple[int, int, dict]]:
    """(worker, task number, result) for each result ready now; a worker's error is raised here."""
    from multiprocessing.connection import wait

    for conn in wait(conns):
        w = conns.index(conn)
        try:
            number, result, error = conn.recv()
        except EOFError:
            raise LmforgeError(f"a tokenize worker process died (exit code {procs[w].exitcode}); "
                               "out of memory? lower [tokenizer] workers") from None
        if error is not None:
            raise error
        yield w, number, result


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
