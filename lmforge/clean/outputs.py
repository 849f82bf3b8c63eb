"""The clean stage's global step, from the saved shard parts (parts.py): dedup over the parts'
signatures, then ``docs/`` and ``rejects/`` written in order by a merge over the parts.

Each part holds its documents and rejects sorted by the output order, so a k-way merge gives the
global order while holding one batch of rows per part, for dedup (which reads only ids, orders
and hashes) and then for the outputs. Dedup's own index (kept MinHash signatures, LSH bands,
exact hashes) is what grows with the corpus; no text is held but the current rows.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Callable, Iterable, Iterator

from lmforge.clean.config import CleanConfig
from lmforge.clean.document import Document, Reject
from lmforge.clean.steps import REJECT_TEXT_CHARS, apply_step as apply_filter
from lmforge.clean.stats import CleanStats

READ_ROWS = 256
DOCS_PER_FILE = 50_000
"""Rows per Parquet file in docs/ and rejects/ (a few hundred MB of text at most)."""
ROW_GROUP_BYTES = 2 << 20
"""Text per Parquet row group, about: a reader decodes a whole row group at once, so this bounds
the memory of every later stage's streaming read and the time to its first document."""
ROW_GROUP_ROWS = 1000


def order_key(by_url: bool) -> Callable[[str, tuple], tuple]:
    """The output order from (url, (file index, record index)): input order, or URL first."""
    return (lambda url, order: (url, order)) if by_url else (lambda url, order: order)


def write_outputs(folder: Path, indexes: list[int], c, stats: CleanStats, by_url: bool,
                  docs_dir: Path, rejects_dir: Path) -> None:
    """Dedup the parts' documents (counted in ``stats``), then write docs/ and rejects/."""
    key = order_key(by_url)
    duplicates: list[Reject] = []
    signatures = heapq.merge(*(_signatures(folder / f"{i:05d}.docs.parquet", key) for i in indexes),
                             key=lambda t: t[0])
    kept = {d.order for d in deduplicate((doc for _, doc in signatures), c, stats, duplicates)}
    texts_of = {r.order: r for r in duplicates}  # their texts are filled in as the merge passes them
    _write_docs(_merged(folder, indexes, "docs", key), kept, texts_of, stats, docs_dir)
    duplicates.sort(key=lambda r: key(r.url, r.order))
    rows = heapq.merge(_merged(folder, indexes, "rejects", key), ((key(r.url, r.order), _reject_row(r))
                                                                  for r in duplicates), key=lambda t: t[0])
    _write_rows((row for _, row in rows), _reject_schema(), rejects_dir)


def _signatures(path: Path, key) -> Iterator[tuple]:
    """(key, document without its text: id, url, source, order, dedup hashes) of a part's
    documents, in its (the output) order."""
    import numpy as np
    import pyarrow.parquet as pq

    columns = ["id", "url", "source", "order_file", "order_record", "sha1", "minhash"]
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(READ_ROWS, columns=columns):
        for row in batch.to_pylist():
            meta = {"sha1": row["sha1"]} if row["sha1"] is not None else {}
            if row["minhash"] is not None:
                meta["minhash"] = np.frombuffer(row["minhash"], dtype=np.uint64)
            order = (row["order_file"], row["order_record"])
            yield key(row["url"], order), Document(row["id"], row["url"], row["source"], "", order=order, meta=meta)


def _merged(folder: Path, indexes: list[int], kind: str, key) -> Iterator[tuple]:
    """(key, row) of every part's ``kind`` rows, in the output order."""
    return heapq.merge(*(_rows(folder / f"{i:05d}.{kind}.parquet", key) for i in indexes), key=lambda t: t[0])


def _rows(path: Path, key) -> Iterator[tuple]:
    # pre_buffer=False here and above: pyarrow would otherwise read the whole part's column
    # chunks before the first row, for every part at once
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(READ_ROWS):
        for row in batch.to_pylist():
            yield key(row["url"], (row["order_file"], row["order_record"])), row


def _write_docs(rows: Iterator[tuple], kept: set, texts_of: dict, stats: CleanStats, folder: Path) -> None:
    from lmforge.clean.words import split_words

    def kept_rows():
        for _, row in rows:
            order = (row["order_file"], row["order_record"])
            if order in texts_of:
                texts_of[order].text = row["text"][:REJECT_TEXT_CHARS]
            if order not in kept:
                continue
            size = len(row["text"].encode("utf-8"))
            stats.totals.update(docs=1, bytes_out=size)
            stats.sources[row["source"]].update(docs=1, bytes_out=size)
            yield {"id": row["id"], "url": row["url"], "source": row["source"], "text": row["text"],
                   "language": row["language"], "language_score": row["language_score"],
                   "n_words": len(split_words(row["text"])), "date": row["date"]}

    _write_rows(kept_rows(), _doc_schema(), folder)
    stats.totals.setdefault("docs", 0)
    stats.totals.setdefault("bytes_out", 0)


def _write_rows(rows: Iterator[dict], schema, folder: Path) -> None:
    """``folder/part-NNNNN.parquet`` of DOCS_PER_FILE rows each (one file even when empty, so the
    schema is always there), each written a row group at a time (about ROW_GROUP_BYTES of text):
    no more than one row group's rows are held."""
    out = _PartWriter(Path(folder), schema)
    try:
        for row in rows:
            out.add(row)
    except BaseException:
        out.abort()  # no half-written file under a final name (the stage's marker is not written either)
        raise
    out.close()


class _PartWriter:
    """Rows into numbered zstd Parquet files, each under a temporary name until complete."""

    def __init__(self, folder: Path, schema):
        self.folder, self.schema, self.files = folder, schema, 0
        self.group_rows, self.group_bytes = ROW_GROUP_ROWS, ROW_GROUP_BYTES
        self.rows, self.text_bytes, self.in_file, self.writer, self.tmp = [], 0, 0, None, None

    def add(self, row: dict) -> None:
        self.rows.append({name: row[name] for name in self.schema.names})
        self.text_bytes += len(row.get("text") or "")  # characters: near enough for a row group's size
        if self.in_file + len(self.rows) >= DOCS_PER_FILE:
            self._finish_file()
        elif len(self.rows) >= self.group_rows or self.text_bytes >= self.group_bytes:
            self._flush()

    def close(self) -> None:
        if self.rows or self.writer is not None or not self.files:
            self._finish_file()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.tmp.unlink(missing_ok=True)
            self.writer = None

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows and self.writer is not None:
            return
        if self.writer is None:
            self.tmp = self.folder / f".part-{self.files:05d}.parquet.tmp"
            self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.in_file += len(self.rows)
        self.rows, self.text_bytes = [], 0

    def _finish_file(self) -> None:
        import os

        self._flush()  # the last rows, or the schema alone for an empty output
        self.writer.close()
        os.replace(self.tmp, self.folder / f"part-{self.files:05d}.parquet")
        self.writer, self.files, self.in_file = None, self.files + 1, 0


def _reject_row(r: Reject) -> dict:
    return {"id": r.id, "url": r.url, "source": r.source, "step": r.step, "reason": r.reason, "detail": r.detail,
            "text": r.text}


def _doc_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("text", pa.string()),
                      ("language", pa.string()), ("language_score", pa.float64()), ("n_words", pa.int64()),
                      ("date", pa.string())])


def _reject_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in ("id", "url", "source", "step", "reason", "detail", "text")])


def deduplicate(docs: Iterable[Document], c: CleanConfig, stats: CleanStats, rejects: list[Reject]) -> Iterator[Document]:
    """Exact then near dedup over ``docs`` in the output order; the first of each group is kept.

    One pass: a document goes to near dedup only once exact dedup kept it, which counts and
    keeps the same as two passes, with no list of the survivors in between.
    """
    from lmforge.clean.dedup.exact import ExactDedup
    from lmforge.clean.dedup.minhash import MinHashDedup

    steps = ([ExactDedup()] if c.exact_dedup else []) + \
        ([MinHashDedup(c.minhash_threshold, c.minhash_num_perm)] if c.minhash_dedup else [])
    for doc in docs:
        if all(apply_filter(step, doc, stats, rejects) for step in steps):
            yield doc


def write_table(table, path: Path) -> None:
    """``table`` as one zstd Parquet file (written under a temporary name, then renamed), in row
    groups of about ROW_GROUP_BYTES of text and at most ROW_GROUP_ROWS rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lmforge.rundir import atomic_path

    rows = ROW_GROUP_ROWS
    if "text" in table.column_names and table.num_rows:
        text_bytes = pc.sum(pc.binary_length(table.column("text"))).as_py() or 0
        rows = max(1, min(rows, round(ROW_GROUP_BYTES * table.num_rows / max(text_bytes, 1))))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=rows)
