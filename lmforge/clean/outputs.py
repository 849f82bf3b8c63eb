"""The clean stage's global step, from the saved shard parts (parts.py): dedup over the parts
(clean/dedup/stages.py), then ``docs/`` and ``rejects/`` written in order by a merge over the parts.

Each part holds its documents and rejects sorted by the output order, so a k-way merge gives the
global order while holding one batch of rows per part. Dedup's tasks hold a part or a bucket of
one band at a time; what this process holds beyond the current rows is the list of removed
rows, in proportion to the duplicates.
"""

from __future__ import annotations

import heapq
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from lmforge.clean.steps import REJECT_TEXT_CHARS
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
                  docs_dir: Path, rejects_dir: Path, map_fn: Callable = map) -> None:
    """Dedup the parts' documents (clean/dedup/stages.py, its tasks through ``map_fn``; counted
    in ``stats``), then write docs/ and rejects/ in the output order."""
    from lmforge.clean.dedup.stages import deduplicate, removed_rows

    dedup = deduplicate(folder, indexes, c.exact_dedup, c.minhash_dedup, c.minhash, by_url, map_fn, url=c.url_dedup)
    for step, counts in dedup.items():
        stats.seconds[step] += counts.pop("seconds")
        stats.step(step).update(counts)
    removed = {i: removed_rows(folder, i) for i in indexes}  # as many entries as duplicates
    key = order_key(by_url)
    _write_docs((row for _, row in _merged(folder, indexes, "docs", key) if row["_row"] not in removed[row["_part"]]),
                stats, docs_dir)
    by_source: Counter = Counter()  # (source, step, reason) -> duplicates removed
    duplicates = ((k, _duplicate_row(row, removed[row["_part"]][row["_row"]], by_source))
                  for k, row in _merged(folder, indexes, "docs", key) if row["_row"] in removed[row["_part"]])
    rows = heapq.merge(_merged(folder, indexes, "rejects", key), duplicates, key=lambda t: t[0])
    _write_rows((row for _, row in rows), _reject_schema(), rejects_dir)
    _source_dedup_funnels(stats, list(dedup), by_source)


def _source_dedup_funnels(stats: CleanStats, steps: list[str], removed: Counter) -> None:
    """Each source's counts of the dedup ``steps`` (in their order): what entered dedup is what
    was kept plus what was removed."""
    for source in {*stats.sources, *(s for s, _, _ in removed)}:
        left = stats.sources[source]["docs"] + sum(n for (s, _, _), n in removed.items() if s == source)
        for step in steps:
            gone = {f"dropped_{why}": n for (s, st, why), n in removed.items() if s == source and st == step}
            stats.source_step(source, step).update({"in": left, "out": left - sum(gone.values()), **gone})
            left -= sum(gone.values())


def _duplicate_row(row: dict, removal: tuple[str, str, str], by_source: Counter) -> dict:
    step, reason, kept = removal
    by_source[(row["source"], step, reason)] += 1
    return {"id": row["id"], "url": row["url"], "source": row["source"], "step": step, "reason": reason,
            "detail": kept, "text": row["text"][:REJECT_TEXT_CHARS]}


def _merged(folder: Path, indexes: list[int], kind: str, key) -> Iterator[tuple]:
    """(key, row) of every part's ``kind`` rows, in the output order; each row also names its
    part (``_part``) and its place in it (``_row``)."""
    return heapq.merge(*(_rows(folder, i, kind, key) for i in indexes), key=lambda t: t[0])


def _rows(folder: Path, index: int, kind: str, key) -> Iterator[tuple]:
    # pre_buffer=False here and above: pyarrow would otherwise read the whole part's column
    # chunks before the first row, for every part at once
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(folder / f"{index:05d}.{kind}.parquet", pre_buffer=False).iter_batches(READ_ROWS):
        for row in batch.to_pylist():
            row["_part"], row["_row"] = index, n
            n += 1
            yield key(row["url"], (row["order_file"], row["order_record"])), row


def _write_docs(rows: Iterator[dict], stats: CleanStats, folder: Path) -> None:
    from lmforge.clean.words import split_words

    def kept_rows():
        for row in rows:
            size = len(row["text"].encode("utf-8"))
            stats.totals.update(docs=1, bytes_out=size)
            stats.sources[row["source"]].update({"docs": 1, "bytes_out": size, f"docs_{row['language'] or 'unknown'}": 1})
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


def _doc_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("url", pa.string()), ("source", pa.string()), ("text", pa.string()),
                      ("language", pa.string()), ("language_score", pa.float64()), ("n_words", pa.int64()),
                      ("date", pa.string())])


def _reject_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in ("id", "url", "source", "step", "reason", "detail", "text")])


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
