"""Readers for the archive formats clean takes: WARC, WET, HTML folders, JSONL and Parquet.

Each reader yields :class:`RawRecord` objects and counts what it skipped, and why, in a
``collections.Counter`` passed by the caller.
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

from lmforge.collect.records import RawRecord
from lmforge.errors import LmforgeError

FORMATS = ("warc", "wet", "arc", "html", "jsonl", "parquet")


def expand_inputs(pattern: str) -> list[Path]:
    """Files named by a path, a folder or a glob, sorted; raise if none exists."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise LmforgeError(f"input {pattern!r}: no such file, folder or glob match (check the path in [[clean.inputs]])")
    return files


def detect_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith(".warc.wet") or name.endswith(".wet"):
        return "wet"
    for fmt, endings in (("warc", (".warc",)), ("arc", (".arc",)), ("html", (".html", ".htm")),
                         ("jsonl", (".jsonl", ".json", ".ndjson")), ("parquet", (".parquet",))):
        if name.endswith(endings):
            return fmt
    raise LmforgeError(f"{path}: cannot tell its format from the name; set format = one of {', '.join(FORMATS)}")


def iter_records(path: str | Path, fmt: str = "auto", text_field: str = "text",
                 skipped: Counter | None = None) -> Iterator[RawRecord]:
    """Yield the records of one file; count skipped records by reason in ``skipped``."""
    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"warc": _iter_warc, "wet": _iter_warc, "arc": _iter_warc, "html": _iter_html,
               "jsonl": _iter_jsonl, "parquet": _iter_parquet}
    if fmt not in readers:
        raise LmforgeError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    yield from readers[fmt](path, text_field, skipped)


def _iter_warc(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as stream:
        for rec in ArchiveIterator(stream, arc2warc=True):
            if rec.rec_type == "conversion":
                text = rec.content_stream().read().decode("utf-8", errors="replace")
                yield _record(rec, text=text, content_type="text/plain", path=path)
            elif rec.rec_type == "response" and rec.http_headers is not None:
                ctype, charset = _parse_content_type(rec.http_headers.get_header("Content-Type", ""))
                yield _record(rec, body=rec.content_stream().read(), content_type=ctype, charset=charset, path=path)
            else:
                skipped[f"record_{rec.rec_type}"] += 1


def _record(rec, path: Path, **kwargs) -> RawRecord:
    headers = rec.rec_headers
    return RawRecord(id=headers.get_header("WARC-Record-ID", ""), url=headers.get_header("WARC-Target-URI", ""),
                     date=headers.get_header("WARC-Date", ""), path=str(path), **kwargs)


def _parse_content_type(value: str) -> tuple[str, str | None]:
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.strip().partition("=")
        if key.lower() == "charset" and val:
            charset = val.strip("\"' ").lower()
    return mime.strip().lower(), charset


def _iter_html(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    yield RawRecord(id=str(path), url=path.resolve().as_uri(), body=path.read_bytes(),
                    content_type="text/html", path=str(path))


def _iter_jsonl(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                skipped["bad_json"] += 1
                continue
            text = row.get(text_field) if isinstance(row, dict) else None
            if not isinstance(text, str):
                skipped["missing_text_field"] += 1
                continue
            yield RawRecord(id=str(row.get("id") or f"{path}:{lineno}"), url=str(row.get("url") or ""),
                            text=text, content_type="text/plain", path=str(path))


def _iter_parquet(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise LmforgeError(f"{path}: no column {text_field!r} (columns: {', '.join(pf.schema_arrow.names)}); set text_field")
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for item in batch.to_pylist():
            row += 1
            text = item.get(text_field)
            if not isinstance(text, str):
                skipped["missing_text_field"] += 1
                continue
            yield RawRecord(id=str(item.get("id") or f"{path}:{row}"), url=str(item.get("url") or ""),
                            text=text, content_type="text/plain", path=str(path))
