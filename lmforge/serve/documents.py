"""The document browser: pages of docs/ or rejects/ read one Parquet row group at a time.

A page never loads a folder: the unfiltered list jumps to its row group through the files'
metadata; a filtered one scans row groups from a cursor (``file.group.row``) and hands back the
cursor after its last row, so the next page starts where this one stopped. A scan that finds few
matches stops after a time budget and says so (``partial``) rather than reading a million rows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.serve.runs import NotFound

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


class _Files:
    """The Parquet files of a folder with their metadata, re-read only when a file changes."""

    def __init__(self):
        self._meta: dict[Path, tuple[tuple, object]] = {}
        self._lock = threading.Lock()

    def list(self, folder: Path) -> list[Path]:
        # Writers rename finished files into place (hidden .tmp names before that): these are whole.
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def metadata(self, path: Path):
        """The file's footer (row groups and their row counts), read once per version of the file."""
        import pyarrow.parquet as pq

        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._meta.get(path)
        if hit and hit[0] == key:
            return hit[1]
        meta = pq.read_metadata(path)
        with self._lock:
            self._meta[path] = (key, meta)
        return meta

    def open(self, path: Path):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path, metadata=self.metadata(path), pre_buffer=False)


class DocumentBrowser:
    def __init__(self):
        self.files = _Files()
        self._languages: dict[tuple, list[str]] = {}

    def page(self, folder: Path, filters: dict[str, str], q: str, cursor: str | None, offset: int,
             size: int) -> dict:
        files = self.files.list(folder)
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
                table = pf.read_row_group(g)
                hits = _matches(table, filters, q, r)
                for i in hits[: size - len(rows)]:
                    rows.append(_summary(table, i, Cursor(f, g, i)))
                if len(rows) >= size:
                    last = rows[-1]["cursor"].split(".")
                    return rows, Cursor(f, g, int(last[2]) + 1), False
                g, r = g + 1, 0
                if (q or any(filters.values())) and time.perf_counter() > deadline:
                    return rows, Cursor(f, g, 0), True
            f, g, r = f + 1, 0, 0
        return rows, None, False

    def document(self, folder: Path, cursor: str) -> dict:
        c = Cursor.parse(cursor)
        files = self.files.list(folder)
        if c.file >= len(files):
            raise NotFound(f"no document at {c}")
        meta = self.files.metadata(files[c.file])
        if c.group >= meta.num_row_groups or c.row >= meta.row_group(c.group).num_rows:
            raise NotFound(f"no document at {c}")
        row = self.files.open(files[c.file]).read_row_group(c.group).slice(c.row, 1).to_pylist()[0]
        text = row.get("text") or ""
        row["text"], row["truncated"] = text[:DOC_TEXT_LIMIT], len(text) > DOC_TEXT_LIMIT
        row["cursor"], row["file"] = str(c), files[c.file].name
        return row

    def languages(self, folder: Path) -> list[str]:
        """The distinct languages of a folder, remembered per file version. The column is read as
        dictionary-encoded, so only its few distinct strings are decoded, not one per document."""
        import pyarrow.parquet as pq

        found: set[str] = set()
        for path in self.files.list(folder):
            st = path.stat()
            key = (path, st.st_mtime_ns, st.st_size)
            if key not in self._languages:
                pf = pq.ParquetFile(path, metadata=self.files.metadata(path), read_dictionary=["language"])
                values: set[str] = set()
                if "language" in pf.schema_arrow.names:
                    for chunk in pf.read(columns=["language"]).column(0).chunks:
                        values.update(chunk.dictionary.to_pylist() if hasattr(chunk, "dictionary") else chunk.to_pylist())
                self._languages[key] = sorted(v for v in values if v)
            found.update(self._languages[key])
        return sorted(found)


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
    row = {name: table[name][i].as_py() for name in table.column_names if name != "text"}
    text = table["text"][i].as_py() if "text" in table.column_names else ""
    row["preview"], row["chars"], row["cursor"] = (text or "")[:PREVIEW_CHARS], len(text or ""), str(cursor)
    return row


class WarcIndex:
    """Where each response record of a run's crawl starts: WARC-Record-ID -> (file, offset).

    Built on the first raw-HTML request and rebuilt when the crawl's files change; a record is then
    read by seeking to its gzip member, not by scanning the archive again.
    """

    def __init__(self):
        self._index: dict[Path, tuple[tuple, dict[str, tuple[Path, int]]]] = {}
        self._lock = threading.Lock()

    def _build(self, crawl: Path) -> dict[str, tuple[Path, int]]:
        from warcio.archiveiterator import ArchiveIterator

        files = sorted(crawl.glob("*.warc.gz")) + sorted(crawl.glob("*.warc"))
        key = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        with self._lock:
            hit = self._index.get(crawl)
            if hit and hit[0] == key:
                return hit[1]
            index = {}
            for path in files:
                with open(path, "rb") as f:
                    it = ArchiveIterator(f)
                    for record in it:
                        if record.rec_type == "response":
                            index[record.rec_headers.get_header("WARC-Record-ID")] = (path, it.get_record_offset())
            self._index[crawl] = (key, index)
            return index

    def has_crawl(self, crawl: Path) -> bool:
        return crawl.is_dir() and any(crawl.glob("*.warc*"))

    def raw_html(self, crawl: Path, record_id: str) -> dict:
        from warcio.archiveiterator import ArchiveIterator

        if not self.has_crawl(crawl):
            raise NotFound("this run has no crawl/*.warc.gz (its records came from another input)")
        where = self._build(crawl).get(record_id)
        if where is None:
            raise NotFound(f"record {record_id[:80]!r} is not in this run's crawl")
        path, offset = where
        with open(path, "rb") as f:
            f.seek(offset)
            record = next(iter(ArchiveIterator(f)))
            body = record.content_stream().read(RAW_HTML_LIMIT + 1)
            content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
        return {"id": record_id, "url": record.rec_headers.get_header("WARC-Target-URI"), "file": path.name,
                "content_type": content_type, "html": body[:RAW_HTML_LIMIT].decode("utf-8", errors="replace"),
                "truncated": len(body) > RAW_HTML_LIMIT}
