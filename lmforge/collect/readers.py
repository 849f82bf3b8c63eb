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
COMPRESSIONS = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}
"""Magic bytes of the compressions a file may carry whatever its name says (RFC 1952, RFC 8878, LZ4 frame)."""
_SUFFIXES = (".gz", ".zst", ".zstd", ".lz4")


class UnreadableInput(LmforgeError):
    """A whole input file that cannot be read (empty, not its format, a wrong column type): the
    stage counts it as ``unreadable`` with this message and goes on with the other files."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # one line, whatever the library's message held


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
    """The format named by the file's name, else recognised by its first bytes (local files)."""
    fmt = _format_from_name(str(path).rsplit("/", 1)[-1].lower())
    if fmt is None and not is_remote(str(path)):
        fmt = sniff_format(Path(path))
    if fmt is None:
        raise LmforgeError(f"{path}: cannot tell its format from its name or its first bytes; "
                           f"set format = one of {', '.join(FORMATS)}")
    return fmt


def _format_from_name(name: str) -> str | None:
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(".warc.wet") or name.endswith(".wet"):
        return "wet"
    for fmt, endings in (("warc", (".warc",)), ("arc", (".arc",)), ("html", (".html", ".htm")),
                         ("jsonl", (".jsonl", ".json", ".ndjson")), ("parquet", (".parquet",))):
        if name.endswith(endings):
            return fmt
    return None


def sniff_format(path: Path) -> str | None:
    """The format of a local file from its first bytes, decompressed first if they are gzip, zstd
    or lz4; None when they name none (WET files are WARC files, read by the same reader)."""
    import zlib

    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            f.seek(0)
            if raw.startswith(b"PAR1"):
                return "parquet"
            head = _decompressed(f, raw).read(4096)
    except (OSError, EOFError, ValueError, zlib.error):  # damaged from the start: not this format
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"WARC/"):
        return "warc"
    if text.startswith(b"filedesc://"):
        return "arc"
    if text[:1] == b"{":
        return "jsonl"
    if text[:1] == b"<" and re.search(rb"<(!doctype html|html|head|body)[\s>]", text[:1024].lower()):
        return "html"
    return None


def compression_of(head: bytes) -> str | None:
    """``gzip``, ``zstd`` or ``lz4`` from a file's first bytes, else None."""
    return next((name for magic, name in COMPRESSIONS.items() if head.startswith(magic)), None)


def _decompressed(stream, head: bytes):
    """``stream`` (at its start; ``head`` its first bytes) decompressed if ``head`` names a compression."""
    import gzip

    from fastwarc.stream_io import Lz4Reader, ZstdReader

    kind = compression_of(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=stream)
    if kind == "zstd":
        return ZstdReader(stream)
    if kind == "lz4":
        return Lz4Reader(stream)
    return stream


def iter_records(path: str | Path, fmt: str = "auto", text_field: str = "text",
                 skipped: Counter | None = None) -> Iterator[RawRecord]:
    """Yield the records of one file; count skipped records by reason in ``skipped``.

    Raise :class:`UnreadableInput` when the file as a whole cannot be read (nothing of it was
    yielded); damage after the first record is counted as ``truncated`` instead. Keys of
    ``skipped`` that start with ``kept_`` count records that were kept despite a fault.
    """
    path = path if is_remote(str(path)) else Path(path)
    skipped = skipped if skipped is not None else Counter()
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"warc": _iter_warc, "wet": _iter_warc, "arc": _iter_arc, "html": _iter_html,
               "jsonl": _iter_jsonl, "parquet": _iter_parquet}
    if fmt not in readers:
        raise LmforgeError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if isinstance(path, Path) and _is_empty(path):
        raise UnreadableInput(f"{path}: empty file (0 bytes)")
    yield from readers[fmt](path, text_field, skipped)


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError as exc:
        raise UnreadableInput(f"{path}: cannot be opened ({exc.strerror or exc})") from None


def decode_content_encoding(body: bytes, encoding: str | None, limit: int = 1 << 30) -> bytes:
    """Undo an HTTP Content-Encoding (gzip, deflate) on a raw payload, keeping at most ``limit`` bytes.

    A payload that does not decode is returned as it is: servers often label plain bytes gzip.
    """
    return _decode(body, encoding, limit)[0]


def _decode(body: bytes, encoding: str | None, limit: int = 1 << 30) -> tuple[bytes, str]:
    """(payload, state): state is ``plain`` (no encoding to undo), ``complete`` (decoded to its
    end), ``no_trailer`` (decoded to its end, but the check bytes after it are missing), ``cut``
    (the compressed stream stops early: its start is returned) or ``not_encoded``
    (the bytes are not what the header says, e.g. stored already decoded: returned as they are)."""
    import zlib

    encoding = (encoding or "").strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate") or not body:
        return body, "plain"
    wbits = 47 if encoding != "deflate" else (15 if body[:1] == b"\x78" else -15)  # 47: gzip or zlib header
    unzip = zlib.decompressobj(wbits)
    try:
        out = unzip.decompress(body, limit)
    except zlib.error:
        return body, "not_encoded"
    if unzip.eof or unzip.unconsumed_tail:
        return out, "complete"
    return out, "no_trailer" if _deflate_ends(body, encoding) else "cut"


def _deflate_ends(body: bytes, encoding: str) -> bool:
    """Whether the compressed data itself ends in ``body`` (its last block is there) although
    the check bytes after it are missing: the archive cut only the gzip trailer (CRC and size),
    as in warcio's example-trunc.warc, so the payload is complete."""
    import zlib

    start = _compressed_start(body, encoding)
    if start is None:
        return False
    raw = zlib.decompressobj(-15)
    try:
        raw.decompress(body[start:], 1 << 30)
    except zlib.error:
        return False
    return raw.eof


def _compressed_start(body: bytes, encoding: str) -> int | None:
    """Offset of the deflate data after a gzip (RFC 1952) or zlib (RFC 1950) header; None if neither."""
    if body[:2] == b"\x1f\x8b" and len(body) >= 10:
        flags, pos = body[3], 10
        if flags & 4:  # FEXTRA
            pos += 2 + int.from_bytes(body[pos:pos + 2], "little")
        for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & bit:
                end = body.find(b"\0", pos)
                if end < 0:
                    return None
                pos = end + 1
        return pos + 2 if flags & 2 else pos  # FHCRC
    if encoding == "deflate" and body[:1] == b"\x78":
        return 2
    return None


def _iter_warc(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    """WARC and WET (plain, or gzip, zstd or lz4 per record or over the whole file) through
    fastwarc, record by record; the compression is recognised by its magic bytes.

    fastwarc stops quietly at damage: a block shorter than its Content-Length, or a gzip member
    cut short (checked after the last record), counts as ``truncated``; every record before it
    has been yielded. A file in which no record is found at all is :class:`UnreadableInput`.
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
            if not positions:
                raise UnreadableInput(f"{path}: not a readable WARC file ({exc})") from None
            skipped["truncated" if "eof" in str(exc).lower() or "trunc" in str(exc).lower() else "unreadable"] += 1
            return
    if not positions:
        raise UnreadableInput(f"{path}: no WARC record found (not a WARC file, or damaged from its start)")
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
    response = _http_response(block)
    if response is None:
        skipped["bad_http_headers"] += 1
        return None
    status, http_headers, body, fault = response
    if fault == "cut" and not headers.get("WARC-Truncated"):
        skipped["short_payload"] += 1
        return None
    if fault in ("content_encoding", "content_length"):
        skipped[f"kept_wrong_{fault}"] += 1
    elif fault == "gzip_trailer":
        skipped["kept_cut_gzip_trailer"] += 1
    ctype, charset = _parse_content_type(http_headers.get("content-type", ""))
    charset = charset or headers.get("WARC-Identified-Content-Charset", "") or None
    return RawRecord(body=body, content_type=ctype, charset=charset, extra={"status": status}, **meta)


def _http_response(block: bytes) -> tuple[int, dict, bytes, str | None] | None:
    """(status, headers, payload, fault) of a response block, None if it is not HTTP.

    The fault says how the HTTP headers misdescribe the stored payload: ``content_encoding`` (a
    payload stored decoded under ``Content-Encoding: gzip``, as in ClueWeb09), ``content_length``
    (a length that does not match a payload that is complete: it decodes to its end or closes
    its ``</html>``), ``gzip_trailer`` (a gzip payload complete but for its 8 check bytes, cut
    by the archive), or ``cut`` (a payload that stops short, taken by the archive). Chunked
    answers carry no length to check.
    """
    head = _split_http(block)
    if head is None:
        return None
    status, headers, payload = head
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    stored = len(payload)
    if chunked:
        payload = _dechunk(payload)
    body, state = _decode(payload, headers.get("content-encoding"))
    if state == "not_encoded":
        return status, headers, body, "content_encoding"
    if state == "cut":
        return status, headers, body, "cut"
    if state == "no_trailer":
        return status, headers, body, "gzip_trailer"
    length = headers.get("content-length", "")
    if chunked or not length.isdigit() or int(length) == stored or status in (204, 304):
        return status, headers, body, None
    if int(length) < stored or state == "complete" or _closes_html(body):
        return status, headers, body, "content_length"
    return status, headers, body, "cut"


def _closes_html(body: bytes) -> bool:
    return b"</html" in body[-2048:].lower()


def _split_http(block: bytes) -> tuple[int, dict, bytes] | None:
    """(status, lower-cased headers, raw payload); the headers end at the first blank line, CRLF
    or LF-only (old crawlers, ClueWeb09, wrote LF-only headers before CRLF bodies)."""
    crlf, lf = block.find(b"\r\n\r\n"), block.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        head, payload = block[:crlf], block[crlf + 4:]
    elif lf >= 0:
        head, payload = block[:lf], block[lf + 2:]
    else:
        head, payload = block, b""
    lines = head.decode("latin-1").splitlines()
    if not lines or not lines[0].startswith("HTTP/"):
        return None
    parts = lines[0].split(None, 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, payload


def parse_http_response(block: bytes) -> tuple[int, dict, bytes] | None:
    """(status, lower-cased headers, payload) of an HTTP response block; None if it is not one.

    Chunked transfer encoding and gzip/deflate content encoding are undone; a body whose
    chunking is broken is kept as it is (real archives hold both kinds of mistake).
    """
    response = _http_response(block)
    return None if response is None else response[:3]


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

    seen = 0
    with _open(path) as stream:
        try:
            for rec in ArchiveIterator(stream, arc2warc=True):
                seen += 1
                if rec.rec_type != "response":
                    skipped[f"record_{rec.rec_type}"] += 1
                    continue
                if rec.http_headers is None:  # an ARC line with no HTTP answer after it
                    skipped["bad_http_headers"] += 1
                    continue
                ctype, charset = _parse_content_type(rec.http_headers.get_header("Content-Type", ""))
                yield RawRecord(id=rec.rec_headers.get_header("WARC-Record-ID", ""),
                                url=rec.rec_headers.get_header("WARC-Target-URI", ""),
                                date=rec.rec_headers.get_header("WARC-Date", ""), path=str(path),
                                body=rec.content_stream().read(), content_type=ctype, charset=charset)
        except Exception as exc:  # warcio raises many kinds on damaged input; keep what came before
            if not seen:
                raise UnreadableInput(f"{path}: not a readable ARC file ({type(exc).__name__}: {exc})"[:300]) from None
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
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UnreadableInput(f"{path}: cannot be read ({exc.strerror or exc})") from None
    yield RawRecord(id=str(path), url=path.resolve().as_uri(), body=body, content_type="text/html", path=str(path))


def _iter_jsonl(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    """JSON lines, plain or compressed (gzip, zstd, lz4: told by the magic bytes, whatever the name).

    Bad lines are counted as ``bad_json``; a file with no good line at all is :class:`UnreadableInput`
    (non-UTF-8 text, another format under a .jsonl name)."""
    import zlib

    bad, good, first_error = Counter(), 0, ""
    try:
        for lineno, line in enumerate(_lines(path), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad["bad_json"] += 1
                first_error = first_error or f"line {lineno}: {exc}"
                continue
            text = row.get(text_field) if isinstance(row, dict) else None
            if not isinstance(text, str):
                bad["missing_text_field"] += 1
                continue
            good += 1
            yield RawRecord(id=str(row.get("id") or f"{path}:{lineno}"), url=str(row.get("url") or ""),
                            text=text, content_type="text/plain", path=str(path))
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        if not good:
            raise UnreadableInput(f"{path}: not readable as JSON lines ({type(exc).__name__}: {exc})"[:300]) from None
        skipped["truncated"] += 1
    if not good and bad["bad_json"]:
        raise UnreadableInput(f"{path}: no line is JSON in UTF-8 ({first_error}); "
                              "convert it to UTF-8 (e.g. iconv -t utf-8)"[:300])
    skipped.update(bad)


def _lines(path) -> Iterator[bytes]:
    """The lines of a local or remote file, decompressed by its magic bytes, a chunk at a time."""
    with _open(path) as raw:
        head = raw.read(8)
        raw.seek(0)
        stream = _decompressed(raw, head)
        rest = b""
        while chunk := stream.read(1 << 20):
            *lines, rest = (rest + chunk).split(b"\n")
            yield from lines
        if rest:
            yield rest


def _iter_parquet(path: Path, text_field: str, skipped: Counter) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # pre_buffer=False: a row group at a time, not the whole file's column chunks first
        pf = pq.ParquetFile(_open(path) if isinstance(path, str) else path, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableInput(f"{path}: not a readable Parquet file ({exc})"[:300]) from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise UnreadableInput(f"{path}: no column {text_field!r} (columns: {', '.join(names)}); set text_field")
    kind = pf.schema_arrow.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise UnreadableInput(f"{path}: column {text_field!r} holds {kind}, not text; "
                              "set text_field to the column that holds the documents")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for item in batch.to_pylist():
                row += 1
                text = item.get(text_field)
                if not isinstance(text, str):
                    skipped["missing_text_field"] += 1
                    continue
                yield RawRecord(id=str(item.get("id") or f"{path}:{row}"), url=str(item.get("url") or ""),
                                text=text, content_type="text/plain", path=str(path))
    except (pa.ArrowException, OSError) as exc:
        if not row:
            raise UnreadableInput(f"{path}: not a readable Parquet file ({exc})"[:300]) from None
        skipped["truncated"] += 1
