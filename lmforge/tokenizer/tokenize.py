"""Stage `tokenize`: encode ``docs/*.parquet`` into llm.c token shards, one shard set per source.

Every document becomes ``[bos] + encode(text)``; documents go to train or val by a seeded hash
of their URL, else their id (corpus.doc_key; stable whatever the file order, worker count or
crawl). A first, cheap pass over the ``id``, ``url`` and ``source`` columns fixes the split (and makes sure a source with >= 2 documents has
one val document). Then the main process reads the files once, cuts them into tasks of about
TASK_BYTES of text, sends tasks to ``workers - 1`` worker processes (Arrow IPC over a pipe),
encodes a task itself whenever no answer is waiting, and writes the token arrays, in input
order, into ``tokens/<source>/{train,val}_NNNNNN.bin``. ``tokens/manifest.json`` is written last.
"""

from __future__ import annotations

import collections
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.rundir import write_json_atomic
from lmforge.tokenizer.corpus import batch_keys, doc_files, doc_hash, doc_key, iter_batches
from lmforge.tokenizer.shards import StreamingShard, dtype_for_vocab

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
IN_FLIGHT = 2  # tasks per worker sent and not yet answered: one running, one ready (a short tail)
COLUMNS = ["id", "url", "source", "text"]


def _tasks(files: list[Path], fine_tail: int = 0) -> Iterator:
    """Arrow record batches (id, url, source, text; strings, defaults filled in) of about TASK_BYTES
    of text, in input order. Each file is read and decoded once, by this process: the workers
    are sent their batches (Arrow IPC, a copy of the text) and never open a file, so two
    workers do not decode the same Parquet pages twice. The last ``fine_tail`` bytes of text
    go in tasks a quarter the size: the processes then finish within a short task of one another."""
    import pyarrow.parquet as pq

    for f, path in enumerate(files):
        pf = pq.ParquetFile(path)  # pre-buffered: one read of the columns, faster than a row group at a time
        names = pf.schema_arrow.names
        if "text" not in names:
            raise LmforgeError(f"{path}: no `text` column (columns: {', '.join(sorted(names))}); "
                               "documents need id, source and text")
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


def _pack(number: int, batch):
    """A task as one message: its number, then the batch as an Arrow IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(struct.pack("<q", number))
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _unpack(message: bytes) -> tuple:
    import pyarrow as pa

    (number,) = struct.unpack_from("<q", message)
    return number, pa.ipc.open_stream(pa.py_buffer(message)[8:]).read_next_batch()


# -- encoding (this process and the workers) -------------------------------------------------
_WORKER: dict = {}


def _set_worker(tok, seed: int, val_fraction: float, forced: set[str]) -> None:
    _WORKER.update(tok=tok, seed=seed, val_fraction=val_fraction, forced=forced,
                   bos=np.array([tok.bos_id], dtype=np.uint32), dtype=dtype_for_vocab(tok.vocab_size))


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


def _worker_main(conn, tokenizer_dir: str) -> None:
    """A worker process: load the tokenizer, take the split settings, then answer each task with
    (task number, result, error); an empty message ends it."""
    import gc
    import pickle
    import signal

    import pyarrow as pa

    gc.freeze()  # what fork copied is never collected here: no copy-on-write faults from gc passes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    pa.set_cpu_count(1)  # one worker, one core: Arrow's threads would compete with the others
    from lmforge.tokenizer.bpe import Tokenizer

    try:
        tok, error = _WORKER.get("tok") or Tokenizer.load(tokenizer_dir), None
        tok.encoding  # tiktoken's tables, built here while the main process reads the first tasks
    except Exception as exc:  # noqa: BLE001 - the main process loads it too and says why first
        tok, error = None, _picklable(exc)
    settings = conn.recv_bytes()
    if not settings:  # stopped before it began (no documents, say)
        return
    if tok is not None:
        _set_worker(tok, *pickle.loads(settings))
    while message := conn.recv_bytes():
        number, batch = _unpack(message)
        try:
            if error is not None:
                raise error
            conn.send((number, _encode_batch(batch), None))
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
    _set_worker(tok, seed, val_fraction, forced)  # forked workers inherit the tokenizer; spawned ones load it
    with _Workers((workers or os.cpu_count() or 1) - 1, tokenizer_dir) as pool:
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


def _encoded(files: list[Path], pool: "_Workers", total_docs: int) -> Iterator[dict]:
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
            for rows, result in _Dispatch(_tasks(files, tail), pool.conns, pool.procs).results():
                yield result
                bar.update(rows)
    finally:
        bar.close()
        _WORKER.clear()


class _Workers:
    """``n`` worker processes, each with one pipe to this one, stopped and reaped on exit.

    Forked after the tokenizer is loaded, they inherit it (spawned where there is no fork, they
    load it themselves); :meth:`configure` sends the split settings. No helper threads
    (multiprocessing.Pool's three threads cost the main process about 1 ms of CPU per task).
    """

    def __init__(self, n: int, tokenizer_dir: Path):
        import multiprocessing as mp

        # fork where there is one: a worker starts in milliseconds with the modules imported, and
        # a caller's script needs no `if __name__ == "__main__"` guard.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns, self.procs = [], []
        if n:  # memory Arrow keeps for reuse would be shared with the workers: reusing it here would copy it
            import pyarrow as pa

            pa.default_memory_pool().release_unused()
        try:
            for _ in range(n):
                conn, child = ctx.Pipe()
                self.procs.append(ctx.Process(target=_worker_main, args=(child, str(tokenizer_dir)), daemon=True))
                self.procs[-1].start()
                child.close()
                self.conns.append(conn)
        except BaseException:
            self.__exit__()
            raise

    def configure(self, seed: int, val_fraction: float, forced: set[str]) -> None:
        for conn in self.conns:
            conn.send((seed, val_fraction, forced))

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc) -> None:
        for conn in self.conns:
            try:
                conn.send_bytes(b"")  # stop, if not told yet (a worker reads on until it gets it)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=None if exc[:1] in ((), (None,)) else 0)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self.conns:
            conn.close()


class _Dispatch:
    """One pool run: this process reads the tasks, keeps each worker IN_FLIGHT tasks ahead,
    yields the results in task order, and encodes a task itself whenever no answer is waiting,
    so that with 2 workers on 2 cores there is no third process asking for a core."""

    def __init__(self, tasks: Iterator, conns: list, procs: list):
        self.tasks, self.conns, self.procs = tasks, conns, procs
        self.load, self.sent, self.done = [0] * len(conns), 0, 0
        self.ready: dict[int, dict] = {}
        self.rows: dict[int, int] = {}
        self.more = True
        # this process runs ahead of the slowest worker by at most this many results
        self.ahead = 4 * IN_FLIGHT * (len(conns) + 1)

    def results(self) -> Iterator[tuple[int, dict]]:
        while True:
            while self.more and min(self.load) < IN_FLIGHT:  # top up the least loaded worker
                w = self.load.index(min(self.load))
                if (batch := self._next()) is not None:
                    self.conns[w].send_bytes(_pack(self.sent - 1, batch))
                    self.load[w] += 1
            while self.done in self.ready:
                yield self.rows.pop(self.done), self.ready.pop(self.done)
                self.done += 1
            if self.done == self.sent and not self.more:
                return
            answers = self._receive(block=not self.more or self.sent - self.done >= self.ahead)
            if not answers and (batch := self._next()) is not None:  # nobody answered: encode one here
                self.ready[self.sent - 1] = _encode_batch(batch)

    def _next(self):
        """The next task, numbered; None at the end, when the workers are told to stop."""
        batch = next(self.tasks, None) if self.more else None
        if batch is None:
            if self.more:
                self.more = False
                for conn in self.conns:  # each stops after its last task, which saves a wait at the end
                    conn.send_bytes(b"")
            return None
        self.rows[self.sent] = batch.num_rows
        self.sent += 1
        return batch

    def _receive(self, block: bool) -> list:
        """Answers ready now (or, blocking, the next ones); a worker's error is raised here."""
        from multiprocessing.connection import wait

        busy = [conn for conn, load in zip(self.conns, self.load) if load]
        answers = []
        for conn in wait(busy, None if block else 0) if busy else ():
            w = self.conns.index(conn)
            try:
                number, result, error = conn.recv()
            except EOFError:
                raise LmforgeError(f"a tokenize worker process died (exit code {self.procs[w].exitcode}); "
                                   "out of memory? lower [tokenizer] workers") from None
            if error is not None:
                raise error
            self.ready[number] = result
            self.load[w] -= 1
            answers.append(number)
        return answers


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
