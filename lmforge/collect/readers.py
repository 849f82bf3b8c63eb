"""Readers for the archive formats clean takes: WARC, WET, HTML folders, JSONL and Parquet.

Each reader yields :class:`RawRecord` objects and counts what it skipped, and why, in a
``collections.Counter`` passed by the caller.
"""

from __future__ import annotations

import glob
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from lmforge.collect.records import RawRecord
from lmforge.errors import LmforgeError

FORMATS = ("warc", "wet", "arc", "html", "jsonl", "parquet")


def expand_inputs(pattern: str) -> list[Path]:
    """Files named by a path, a folder or a glob, sorted; raise if none exists. A URL is kept as a str."""
    if is_remote(pattern):
        return [pattern]  # a URL: fetched by the reader through fsspec
    path = Path(pattern)
    if path.is_dir():
        # A folder (e.g. a saved website) also holds scripts, styles and images: keep what we can read.
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and _readable(p))
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise LmforgeError(f"input {pattern!r}: no such file, folder or glob match (check the path in [[clean.inputs]])")
    return files


def _readable(path: Path) -> bool:
    try:
        detect_format(path)
    except LmforgeError:
        return False
    return True


def detect_format(path: Path | str) -> str:
    name = str(path).rsplit("/", 1)[-1].lower()
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
    path = path if is_remote(str(path)) else Path(path)
    skipped = skipped if skipped is not None else Counter()
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"warc": _iter_warc, "wet": _iter_warc, "arc": _iter_arc, "html": _iter_html,
               "jsonl": _iter_jsonl, "parquet": _iter_parquet}
    if fmt not in readers:
        raise LmforgeError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    yield from readers[fmt](path, text_field, skipped)


def decode_content_encoding(body: bytes, encoding: str | None, limit: int = 1 << 30) -> bytes:
    """Undo an HTTP Content-Encoding (gzip, deflate) on a raw payload, keeping at most ``limit`` bytes.

    A payload that does not decode is returned as it is: servers often label plain bytes gzip.
    """
    import zlib

    encoding = (encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate") and body:
        wbits = 47 if encoding != "deflate" else (15 if body[:1] == b"\x78" else -15)  # 47: gzip or zlib header
        try:
            return zlib.decompressobj(wbits).decompress(body, limit)
        except zlib.error:
            return body
    return body


def _iter_warc(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    """WARC and WET (plain, gzip per record or whole-file gzip) through fastwarc, record by record.

    fastwarc (several times faster than warcio) stops quietly at damage: a block shorter than
    its Content-Length, or a gzip member cut short (checked after the last record), counts as
    ``truncated``; every record before it has been yielded.
    """
    from fastwarc.warc import ArchiveIterator

    positions = []
    with _open(path) as stream:
        try:
            for rec in ArchiveIterator(stream, parse_http=False, quirks_mode=True):
                positions.append(rec.stream_pos)
                block = rec.reader.read()
                if len(block) < rec.content_length:
                    skipped["truncated"] += 1
                    return
                out = _warc_record(rec, block, path, skipped)
                if out is not None:
                    yield out
        except (OSError, ValueError, EOFError) as exc:  # fastwarc signals unreadable bytes as OSError
            skipped["truncated" if "eof" in str(exc).lower() or "trunc" in str(exc).lower() else "unreadable"] += 1
            return
    if isinstance(path, Path) and _gzip_cut_short(path, positions):
        skipped["truncated"] += 1


def _gzip_cut_short(path: Path, positions: list[int]) -> bool:
    """Whether a gzip file ends inside a member (fastwarc ends such a file quietly).

    With a gzip member per record, ``positions`` are member offsets, so only the members from
    the last record on are decompressed again; a whole-file gzip is checked from the start.
    """
    import zlib

    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return False
        per_member = len(positions) > 1 and all(a < b for a, b in zip(positions, positions[1:]))
        f.seek(positions[-1] if per_member else 0)
        unzip, fed = zlib.decompressobj(31), False
        while chunk := f.read(1 << 20):
            while chunk:
                try:
                    unzip.decompress(chunk)
                except zlib.error:
                    return True
                fed = True
                if not unzip.eof:
                    break
                chunk, unzip, fed = unzip.unused_data, zlib.decompressobj(31), False
        return fed  # data fed to a member that never ended: the file was cut


def _warc_record(rec, block: bytes, path: Path, skipped: Counter) -> RawRecord | None:
    kind = str(rec.record_type)
    headers = rec.headers
    meta = dict(id=headers.get("WARC-Record-ID", ""), url=headers.get("WARC-Target-URI", ""),
                date=headers.get("WARC-Date", ""), path=str(path))
    if kind == "conversion":
        return RawRecord(text=block.decode("utf-8", errors="replace"), content_type="text/plain", **meta)
    if kind == "resource" and headers.get("Content-Type", "").lower().startswith(("text/html", "application/xhtml")):
        ctype, charset = _parse_content_type(headers.get("Content-Type", ""))
        return RawRecord(body=block, content_type=ctype, charset=charset, **meta)
    if kind != "response":
        skipped[f"record_{kind}"] += 1
        return None
    parsed = parse_http_response(block)
    if parsed is None:
        skipped["bad_http_headers"] += 1
        return None
    status, http_headers, body = parsed
    if _payload_cut_short(block, status, http_headers, headers):
        skipped["short_payload"] += 1
        return None
    ctype, charset = _parse_content_type(http_headers.get("content-type", ""))
    charset = charset or headers.get("WARC-Identified-Content-Charset", "") or None
    return RawRecord(body=body, content_type=ctype, charset=charset, extra={"status": status}, **meta)


def _payload_cut_short(block: bytes, status: int, http_headers: dict, warc_headers) -> bool:
    """Whether the payload is shorter than its HTTP Content-Length with no WARC-Truncated header
    to say why: a WARC Content-Length that is too small (or a capture cut off) took its tail,
    and the next record is found again after it. Not checked for chunked answers (no length)."""
    length = http_headers.get("content-length", "")
    if (not length.isdigit() or status in (204, 304) or warc_headers.get("WARC-Truncated")
            or "chunked" in http_headers.get("transfer-encoding", "").lower()):
        return False
    end, sep = block.find(b"\r\n\r\n"), 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    return len(block) - end - sep < int(length)


def parse_http_response(block: bytes) -> tuple[int, dict, bytes] | None:
    """(status, lower-cased headers, payload) of an HTTP response block; None if it is not one.

    Chunked transfer encoding and gzip/deflate content encoding are undone; a body whose
    chunking is broken is kept as it is (real archives hold both kinds of mistake).
    """
    head, sep, payload = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, payload = block.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines or not lines[0].startswith("HTTP/"):
        return None
    parts = lines[0].split(None, 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    return status, headers, decode_content_encoding(payload, headers.get("content-encoding"))


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while pos < len(data):
        eol = data.find(b"\r\n", pos)
        try:
            size = int(data[pos:eol].split(b";")[0], 16) if eol >= 0 else -1
        except ValueError:
            size = -1
        if size < 0 or eol + 2 + size > len(data):
            return data  # not valid chunking after all: keep the bytes as they are
        if size == 0:
            break
        out.append(data[eol + 2: eol + 2 + size])
        pos = eol + 4 + size
    return b"".join(out)


def _iter_arc(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    """ARC (the format before WARC) through warcio, which converts each record to WARC terms."""
    from warcio.archiveiterator import ArchiveIterator

    with _open(path) as stream:
        try:
            for rec in ArchiveIterator(stream, arc2warc=True):
                if rec.rec_type != "response" or rec.http_headers is None:
                    skipped[f"record_{rec.rec_type}"] += 1
                    continue
                ctype, charset = _parse_content_type(rec.http_headers.get_header("Content-Type", ""))
                yield RawRecord(id=rec.rec_headers.get_header("WARC-Record-ID", ""),
                                url=rec.rec_headers.get_header("WARC-Target-URI", ""),
                                date=rec.rec_headers.get_header("WARC-Date", ""), path=str(path),
                                body=rec.content_stream().read(), content_type=ctype, charset=charset)
        except Exception as exc:  # warcio raises many kinds on damaged input; keep what came before
            skipped["truncated" if isinstance(exc, (EOFError, OSError)) else "unreadable"] += 1


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL for fsspec (``https://``, ``s3://``, ``hf://``...) rather than a local file."""
    return bool(_URL.match(path)) and not path.startswith("file://")


def _open(path):
    """A binary stream of a local path or (with fsspec) a remote URL."""
    if is_remote(str(path)):
        try:
            import fsspec
        except ImportError:
            raise LmforgeError(f"{path}: reading URLs needs fsspec; "
                               "install it with: pip install 'lmforge[remote]'") from None
        return fsspec.open(str(path), "rb").open()
    return open(path, "rb")


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
    import gzip

    raw = _open(path)
    with (gzip.open(raw) if str(path).endswith(".gz") else raw) as f:
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

    # pre_buffer=False: a row group at a time, not the whole file's column chunks first
    pf = pq.ParquetFile(_open(path) if isinstance(path, str) else path, pre_buffer=False)
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
