"""The document browser: pages of docs/ or rejects/ read one Parquet row group at a time.

A page never loads a folder: the unfiltered list jumps to its row group through the files'
metadata; a filtered one scans row groups from a cursor (``file.group.row``) and hands back the
cursor after its last row, so the next page starts where this one stopped. A scan that finds few
matches stops after a time budget and says so (``partial``) rather than reading a million rows.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.serve.runs import NotFound, Unreadable

KINDS = ("docs", "rejects")
FILTERS = ("step", "reason", "source", "language")
PREVIEW_CHARS = 300
DOC_TEXT_LIMIT = 1 << 20
RAW_HTML_LIMIT = 512 << 10
# A filtered page scans row groups for at most this long, then returns what it found (partial).
SCAN_BUDGET_S = 0.25


class BadRequest(LmforgeError):
    """A request the app refuses (HTTP 422): the message names the limit."""


@dataclass(frozen=True)
class Cursor:
    file: int
    group: int
    row: int

    @classmethod
    def parse(cls, text: str) -> "Cursor":
        try:
            file, group, row = (int(x) for x in text.split("."))
        except ValueError:
            raise BadRequest(f"cursor {text[:40]!r} is not FILE.GROUP.ROW (take it from a page's `next`)") from None
        if min(file, group, row) < 0:
            raise BadRequest("a cursor's numbers are not negative")
        return cls(file, group, row)

    def __str__(self) -> str:
        return f"{self.file}.{self.group}.{self.row}"


@contextmanager
def parquet_errors(path: Path):
    """A file of docs/ or rejects/ that pyarrow cannot read becomes one message naming it and the
    command that makes it again (pyarrow's ArrowInvalid is a ValueError, its I/O errors OSErrors)."""
    import pyarrow as pa

    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        run = path.parent.parent
        raise Unreadable(f"{run.name}/{path.parent.name}/{path.name} is not a readable Parquet file of documents "
                         f"({str(exc)[:100]}); make it again with `lmforge run {run / 'config.toml'} --force clean`") from None


class _Files:
    """The metadata of Parquet files, re-read only when a file changes. The files come from the
    app (``ServedRun.files``): writers rename finished files into place, so these are whole."""

    def __init__(self):
        self._meta: dict[Path, tuple[tuple, object]] = {}
        self._lock = threading.Lock()

    def metadata(self, path: Path):
        """The file's footer (row groups and their row counts), read once per version of the file."""
        import pyarrow.parquet as pq

        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._meta.get(path)
        if hit and hit[0] == key:
            return hit[1]
        with parquet_errors(path):
            meta = pq.read_metadata(path)
        with self._lock:
            self._meta[path] = (key, meta)
        return meta

    def open(self, path: Path):
        import pyarrow.parquet as pq

        metadata = self.metadata(path)
        with parquet_errors(path):
            return pq.ParquetFile(path, metadata=metadata, pre_buffer=False)

    def read_group(self, path: Path, pf, group: int):
        with parquet_errors(path):
            return pf.read_row_group(group)


class DocumentBrowser:
    def __init__(self):
        self.files = _Files()
        self._languages: dict[tuple, list[str]] = {}

    def page(self, files: list[Path], filters: dict[str, str], q: str, cursor: str | None, offset: int,
             size: int) -> dict:
        filtered = bool(q) or any(filters.values())
        if offset and (filtered or cursor):
            raise BadRequest("offset pages only the unfiltered list; with filters or a cursor follow `next`")
        start = Cursor.parse(cursor) if cursor else self._seek(files, offset)
        rows, nxt, partial = self._scan(files, start, filters, q, size)
        total = None if filtered else sum(self.files.metadata(p).num_rows for p in files)
        return {"rows": rows, "next": str(nxt) if nxt else None, "partial": partial, "total": total,
                "files": len(files)}

    def _seek(self, files: list[Path], offset: int) -> Cursor:
        """The cursor of row number ``offset`` of the folder, from the metadata alone."""
        for f, path in enumerate(files):
            meta = self.files.metadata(path)
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if offset < n:
                    return Cursor(f, g, offset)
                offset -= n
        return Cursor(len(files), 0, 0)

    def _scan(self, files, start: Cursor, filters, q, size):
        rows, deadline = [], time.perf_counter() + SCAN_BUDGET_S
        f, g, r = start.file, start.group, start.row
        while f < len(files):
            pf = self.files.open(files[f])
            while g < pf.metadata.num_row_groups:
                table = self.files.read_group(files[f], pf, g)
                with parquet_errors(files[f]):  # a column of another type than the clean stage writes
                    hits = _matches(table, filters, q, r)
                with parquet_errors(files[f]):
                    rows += [_summary(table, i, Cursor(f, g, i)) for i in hits[: size - len(rows)]]
                if len(rows) >= size:
                    last = rows[-1]["cursor"].split(".")
                    return rows, Cursor(f, g, int(last[2]) + 1), False
                g, r = g + 1, 0
                if (q or any(filters.values())) and time.perf_counter() > deadline:
                    return rows, Cursor(f, g, 0), True
            f, g, r = f + 1, 0, 0
        return rows, None, False

    def document(self, files: list[Path], cursor: str) -> dict:
        c = Cursor.parse(cursor)
        if c.file >= len(files):
            raise NotFound(f"no document at {c}")
        meta = self.files.metadata(files[c.file])
        if c.group >= meta.num_row_groups or c.row >= meta.row_group(c.group).num_rows:
            raise NotFound(f"no document at {c}")
        path = files[c.file]
        row = self.files.read_group(path, self.files.open(path), c.group).slice(c.row, 1).to_pylist()[0]
        text = row.get("text") if isinstance(row.get("text"), str) else ""
        row = {k: _plain(v) for k, v in row.items()}
        row["text"], row["truncated"] = text[:DOC_TEXT_LIMIT], len(text) > DOC_TEXT_LIMIT
        row["cursor"], row["file"] = str(c), files[c.file].name
        return row

    def languages(self, files: list[Path]) -> list[str]:
        """The distinct languages of the files, remembered per file version. The column is read as
        dictionary-encoded, so only its few distinct strings are decoded, not one per document."""
        found: set[str] = set()
        for path in files:
            st = path.stat()
            key = (path, st.st_mtime_ns, st.st_size)
            if key not in self._languages:
                metadata = self.files.metadata(path)
                with parquet_errors(path):
                    self._languages[key] = _languages(path, metadata)
            found.update(self._languages[key])
        return sorted(found)


def _languages(path: Path, metadata) -> list[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, metadata=metadata, read_dictionary=["language"])
    values: set = set()
    if "language" in pf.schema_arrow.names:
        for chunk in pf.read(columns=["language"]).column(0).chunks:
            values.update(chunk.dictionary.to_pylist() if hasattr(chunk, "dictionary") else chunk.to_pylist())
    return sorted(v for v in values if isinstance(v, str) and v)


def _matches(table, filters: dict[str, str], q: str, start_row: int) -> list[int]:
    import numpy as np
    import pyarrow.compute as pc

    mask = None
    for name, value in filters.items():
        if not value:
            continue
        if name not in table.column_names:
            return []
        cond = pc.equal(table[name], value)
        mask = cond if mask is None else pc.and_(mask, cond)
    if q:
        cond = None
        for name in ("url", "text"):
            if name in table.column_names:
                hit = pc.match_substring(table[name], q, ignore_case=True)
                cond = hit if cond is None else pc.or_(cond, hit)
        if cond is None:
            return []
        mask = cond if mask is None else pc.and_(mask, cond)
    if mask is None:
        return list(range(start_row, table.num_rows))
    picked = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))
    return picked[picked >= start_row].tolist()


def _summary(table, i: int, cursor: Cursor) -> dict:
    row = {name: _plain(table[name][i].as_py()) for name in table.column_names if name != "text"}
    text = table["text"][i].as_py() if "text" in table.column_names else ""
    text = text if isinstance(text, str) else ""
    row["preview"], row["chars"], row["cursor"] = (text or "")[:PREVIEW_CHARS], len(text or ""), str(cursor)
    return row


def _plain(value):
    """A Parquet value as JSON can send it: NaN and infinities as null, bytes as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:PREVIEW_CHARS]).decode("utf-8", errors="replace")
    return value


class WarcIndex:
    """Where each response record of a run's crawl starts: WARC-Record-ID -> (file, offset).

    Built on the first raw-HTML request and rebuilt when the crawl's files change; a record is then
    read by seeking to its gzip member, not by scanning the archive again. The files come from the
    app (``ServedRun.files``: only those inside the runs folder).
    """

    PATTERNS = ("*.warc.gz", "*.warc")

    def __init__(self):
        self._index: dict[tuple, dict[str, tuple[Path, int]]] = {}
        self._lock = threading.Lock()

    def _build(self, files: list[Path]) -> dict[str, tuple[Path, int]]:
        key = tuple((p, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        with self._lock:
            if key not in self._index:
                index = {}
                for path in files:
                    with warc_errors(path), open(path, "rb") as f:
                        index.update(_responses(f))
                self._index = {k: v for k, v in self._index.items() if k[0][0].parent != files[0].parent}
                self._index[key] = index
            return self._index[key]

    def raw_html(self, files: list[Path], record_id: str) -> dict:
        from warcio.archiveiterator import ArchiveIterator

        if not files:
            raise NotFound("this run has no crawl/*.warc.gz (its records came from another input)")
        where = self._build(files).get(record_id)
        if where is None:
            raise NotFound(f"record {record_id[:80]!r} is not in this run's crawl")
        path, offset = where
        with warc_errors(path), open(path, "rb") as f:
            f.seek(offset)
            record = next(iter(ArchiveIterator(f)))
            body = record.content_stream().read(RAW_HTML_LIMIT + 1)
            content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
        return {"id": record_id, "url": record.rec_headers.get_header("WARC-Target-URI"), "file": path.name,
                "content_type": content_type, "html": body[:RAW_HTML_LIMIT].decode("utf-8", errors="replace"),
                "truncated": len(body) > RAW_HTML_LIMIT}


def _responses(f) -> dict[str, tuple[Path, int]]:
    from warcio.archiveiterator import ArchiveIterator

    found, it = {}, ArchiveIterator(f)
    for record in it:
        if record.rec_type == "response":
            found[record.rec_headers.get_header("WARC-Record-ID")] = (Path(f.name), it.get_record_offset())
    return found


@contextmanager
def warc_errors(path: Path):
    """A WARC file that warcio cannot read becomes one message naming it (the crawl makes it again)."""
    import zlib

    from warcio.exceptions import ArchiveLoadFailed

    try:
        yield
    except (OSError, ValueError, EOFError, StopIteration, LookupError, zlib.error, ArchiveLoadFailed) as exc:
        raise Unreadable(f"{path.parent.parent.name}/crawl/{path.name} is not a readable WARC file ({str(exc)[:100]}); "
                         f"make it again with `lmforge run {path.parent.parent / 'config.toml'} --force crawl`") from None
