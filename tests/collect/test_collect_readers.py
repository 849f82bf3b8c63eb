"""Readers on the files real archives contain: broken gzip, lying lengths, odd records, old charsets."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter

import pytest

from lmforge.collect.charset import decode_html
from lmforge.collect.readers import detect_format, expand_inputs, iter_records, parse_http_response
from lmforge.errors import LmforgeError

RUSSIAN = "Привет, мир! Это страница в кодировке windows-1251, и её текст должен прочитаться правильно."
JAPANESE = "日本語のページです。東京都の天気は晴れです。"


def warc_record(kind: str, uri: str, block: bytes, extra: str = "", length: int | None = None) -> bytes:
    ctype = {"response": "application/http; msgtype=response", "request": "application/http; msgtype=request",
             "conversion": "text/plain", "warcinfo": "application/warc-fields"}.get(kind, "application/octet-stream")
    head = (f"WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
            f"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Target-URI: {uri}\r\nContent-Type: {ctype}\r\n{extra}"
            f"Content-Length: {len(block) if length is None else length}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def http(body: bytes, ctype: str = "text/html", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}\r\n".encode() + body


def chunked(body: bytes) -> bytes:
    parts = [body[i:i + 7] for i in range(0, len(body), 7)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def messy_records() -> list[bytes]:
    page = b"<html><body>plain page</body></html>"
    return [
        warc_record("warcinfo", "", b"software: test\r\n"),
        warc_record("response", "http://a.test/utf8", http(page, "text/html; charset=utf-8")),
        warc_record("request", "http://a.test/utf8", b"GET /utf8 HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        warc_record("response", "http://a.test/eucjp", http(f'<meta charset="euc-jp">{JAPANESE}'.encode("euc-jp"))),
        warc_record("response", "http://a.test/sjis",
                    http(JAPANESE.encode("shift_jis"), "text/html; charset=Shift_JIS")),
        warc_record("response", "http://a.test/cp1251", http(f"<p>{RUSSIAN}</p>".encode("cp1251"))),
        warc_record("response", "http://a.test/chunked", http(chunked(page), extra="Transfer-Encoding: chunked\r\n")),
        warc_record("response", "http://a.test/badchunk",
                    http(b"zz\r\n" + page, extra="Transfer-Encoding: chunked\r\n")),
        warc_record("response", "http://a.test/gz", http(gzip.compress(page), extra="Content-Encoding: gzip\r\n")),
        warc_record("response", "http://a.test/nopayloadtype", http(page), extra="WARC-Identified-Payload-Type: \r\n"),
        warc_record("revisit", "http://a.test/utf8", b""),
        warc_record("metadata", "http://a.test/utf8", b"fetchTimeMs: 12\r\n"),
        warc_record("response", "http://a.test/post", b"not an http response at all"),
    ]


PAGE_URLS = ["utf8", "eucjp", "sjis", "cp1251", "chunked", "badchunk", "gz", "nopayloadtype"]


@pytest.fixture(params=["plain", "gzip_per_record", "gzip_whole_file"])
def messy_warc(request, tmp_path):
    records = messy_records()
    data = {"plain": b"".join(records), "gzip_per_record": b"".join(gzip.compress(r) for r in records),
            "gzip_whole_file": gzip.compress(b"".join(records))}[request.param]
    path = tmp_path / ("x.warc" if request.param == "plain" else "x.warc.gz")
    path.write_bytes(data)
    return path


def test_warc_yields_every_page_and_counts_the_rest(messy_warc):
    skipped = Counter()
    recs = {r.url.rsplit("/", 1)[1]: r for r in iter_records(messy_warc, skipped=skipped)}
    assert list(recs) == PAGE_URLS
    assert skipped == Counter(record_warcinfo=1, record_request=1, record_revisit=1, record_metadata=1,
                              bad_http_headers=1)
    page = b"<html><body>plain page</body></html>"
    assert recs["chunked"].body == page and recs["gz"].body == page and recs["utf8"].charset == "utf-8"
    assert recs["badchunk"].body.endswith(page)  # broken chunking: the bytes are kept as they are
    assert JAPANESE in decode_html(recs["eucjp"].body, recs["eucjp"].charset)
    assert JAPANESE in decode_html(recs["sjis"].body, recs["sjis"].charset)
    assert RUSSIAN in decode_html(recs["cp1251"].body, recs["cp1251"].charset)


@pytest.mark.parametrize("layout", ["gzip_per_record", "gzip_whole_file", "plain"])
def test_truncated_file_yields_everything_before_the_damage(tmp_path, layout):
    records = messy_records()
    head, damaged = b"".join(records[:5]), records[5]
    if layout == "gzip_per_record":
        member = gzip.compress(damaged)
        data = b"".join(gzip.compress(r) for r in records[:5]) + member[: len(member) // 2]
    elif layout == "gzip_whole_file":
        whole = gzip.compress(head + damaged)
        data = whole[: len(gzip.compress(head)) + 40]
    else:
        data = head + damaged[: len(damaged) - 30]
    path = tmp_path / ("cut.warc" if layout == "plain" else "cut.warc.gz")
    path.write_bytes(data)
    skipped = Counter()
    urls = [r.url.rsplit("/", 1)[1] for r in iter_records(path, skipped=skipped)]
    assert urls == ["utf8", "eucjp", "sjis"]
    assert skipped["truncated"] == 1


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_content_length_never_crashes(tmp_path, gz):
    def three(delta, truncated=""):
        block = http(b"<p>second</p>", extra="Content-Length: 13\r\n")
        records = [warc_record("response", "http://a.test/first", http(b"<p>first</p>")),
                   warc_record("response", "http://a.test/second", block, extra=truncated, length=len(block) + delta),
                   warc_record("response", "http://a.test/third", http(b"<p>third</p>"))]
        path = tmp_path / f"lying{delta}.warc{'.gz' if gz else ''}"
        path.write_bytes(b"".join(gzip.compress(r) for r in records) if gz else b"".join(records))
        skipped = Counter()
        return {r.url.rsplit("/", 1)[1]: r.body for r in iter_records(path, skipped=skipped)}, skipped

    # Too short: the reader finds the next record again; the lying record, shorter than its own
    # HTTP Content-Length, is counted and left out.
    bodies, skipped = three(-10)
    assert list(bodies) == ["first", "third"] and bodies["third"] == b"<p>third</p>"
    assert skipped == Counter(short_payload=1)
    # A record that says it was truncated (Common Crawl cuts pages at 1 MiB) is kept as it is.
    bodies, skipped = three(-10, truncated="WARC-Truncated: length\r\n")
    assert list(bodies) == ["first", "second", "third"] and bodies["second"] == b"<p>" and not skipped
    # Too long: the record runs into the end of the file, which counts as truncated.
    bodies, skipped = three(+500)
    assert list(bodies) == ["first"] and skipped["truncated"] == 1


def test_wet_conversion_records_give_text(tmp_path):
    path = tmp_path / "x.warc.wet.gz"
    path.write_bytes(b"".join(gzip.compress(r) for r in [
        warc_record("warcinfo", "", b"software: test\r\n"),
        warc_record("conversion", "http://a.test/1", "Hello WET — ünïcode".encode()),
    ]))
    recs = list(iter_records(path))
    assert [(r.url, r.text, r.body) for r in recs] == [("http://a.test/1", "Hello WET — ünïcode", None)]


def test_arc_file(tmp_path):
    body = http(b"<html>arc page</html>")
    header_body = b"1 0 test\nURL IP-address Archive-date Content-type Archive-length\n"
    head = b"filedesc://x.arc 0.0.0.0 20040101000000 text/plain %d\n" % len(header_body) + header_body + b"\n"
    rec = b"http://a.test/old 1.2.3.4 20040101000000 text/html %d\n" % len(body) + body + b"\n"
    path = tmp_path / "x.arc.gz"
    path.write_bytes(gzip.compress(head) + gzip.compress(rec))
    recs = list(iter_records(path))
    assert [(r.url, r.body, r.content_type) for r in recs] == [
        ("http://a.test/old", b"<html>arc page</html>", "text/html")]


def test_jsonl_parquet_and_html_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(json.dumps({"content": "one", "url": "u1"}) + "\n{broken\n"
                                      + json.dumps({"other": 1}) + "\n", encoding="utf-8")
    skipped = Counter()
    assert [(r.text, r.url) for r in iter_records(tmp_path / "a.jsonl", text_field="content", skipped=skipped)] == [
        ("one", "u1")]
    assert skipped == Counter(bad_json=1, missing_text_field=1)
    table = pa.table({"text": ["fw doc"], "id": ["<urn:1>"], "url": ["https://x.test/"]})
    pq.write_table(table, tmp_path / "f.parquet")
    assert [(r.id, r.text) for r in iter_records(tmp_path / "f.parquet")] == [("<urn:1>", "fw doc")]
    with pytest.raises(LmforgeError, match="no column 'body'"):
        list(iter_records(tmp_path / "f.parquet", text_field="body"))
    site = tmp_path / "site"
    site.mkdir()
    german = "<p>Schöne Grüße aus München! Die Straße führt über die Brücke zum Bahnhof.</p>"
    (site / "p.html").write_bytes(german.encode("cp1252"))
    files = expand_inputs(str(site))
    assert [f.name for f in files] == ["p.html"]
    assert german in decode_html(next(iter_records(files[0])).body)  # no header, no <meta>: detected


def test_remote_url_without_fsspec_names_the_extra(without_module):
    without_module("fsspec")
    with pytest.raises(LmforgeError, match=r"lmforge\[remote\]"):
        list(iter_records("https://example.invalid/x.warc.gz"))


def test_remote_paths_go_through_fsspec():
    import fsspec

    data = b"".join(gzip.compress(r) for r in messy_records())
    with fsspec.open("memory://bucket/x.warc.gz", "wb") as f:
        f.write(data)
    assert expand_inputs("memory://bucket/x.warc.gz") == ["memory://bucket/x.warc.gz"]
    urls = [r.url.rsplit("/", 1)[1] for r in iter_records("memory://bucket/x.warc.gz")]
    assert urls == PAGE_URLS


def test_parse_http_response_and_decode_html_precedence():
    assert parse_http_response(b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\n\r\nbody") == (404, {"x-a": "1"}, b"body")
    assert parse_http_response(b"GET / HTTP/1.1\r\n\r\n") is None
    meta_says_sjis = '<meta charset="shift_jis">日本'.encode("shift_jis")
    assert decode_html(meta_says_sjis, None).endswith("日本")  # no header: <meta> wins over detection
    assert decode_html("é".encode("utf-8"), "iso-8859-1") == "Ã©"  # the header wins, as in a browser
    assert decode_html(b"\xef\xbb\xbfhi", "cp1251") == "hi"  # a byte order mark wins over everything


# ---------------------------------------------------------------- headers that misdescribe the body

PAGE = b"<html><head><title>t</title></head>\r\n\r\n<body><p>a real page</p></body></html>\n"


def read_one(tmp_path, block: bytes, extra: str = "", version: bytes = b"WARC/1.1") -> tuple[list, Counter]:
    path = tmp_path / "one.warc.gz"
    path.write_bytes(gzip.compress(warc_record("response", "http://a.test/p", block, extra).replace(b"WARC/1.1", version, 1)))
    skipped = Counter()
    return [r.body for r in iter_records(path, skipped=skipped)], skipped


@pytest.mark.parametrize("version", [b"WARC/1.1", b"WARC/0.18"])
def test_body_stored_decoded_under_gzip_header_is_kept(tmp_path, version):
    # ClueWeb09 (WARC/0.18) stored bodies decoded, kept the server's gzip headers, and wrote
    # LF-only headers before bodies with CRLF in them.
    compressed = gzip.compress(PAGE)
    block = (b"HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Encoding: gzip\n"
             b"Content-Length: %d\n\n" % len(compressed)) + PAGE
    bodies, skipped = read_one(tmp_path, block, version=version)
    assert bodies == [PAGE] and skipped == Counter(kept_wrong_content_encoding=1)


@pytest.mark.parametrize("declared", [len(PAGE) + 500, len(PAGE) - 20])
def test_complete_body_with_a_wrong_content_length_is_kept(tmp_path, declared):
    bodies, skipped = read_one(tmp_path, http(PAGE, extra=f"Content-Length: {declared}\r\n"))
    assert bodies == [PAGE] and skipped == Counter(kept_wrong_content_length=1)
    compressed = gzip.compress(PAGE)  # a gzip body that decodes to its end is complete whatever the length says
    bodies, skipped = read_one(tmp_path, http(compressed, extra=f"Content-Encoding: gzip\r\nContent-Length: {declared}\r\n"))
    assert bodies == [PAGE] and skipped == Counter(kept_wrong_content_length=1)


def test_body_cut_by_the_archive_is_skipped_unless_it_says_so(tmp_path):
    compressed = gzip.compress(PAGE * 20)
    cut = http(compressed[: len(compressed) // 2], extra=f"Content-Encoding: gzip\r\nContent-Length: {len(compressed)}\r\n")
    assert read_one(tmp_path, cut) == ([], Counter(short_payload=1))
    bodies, skipped = read_one(tmp_path, cut, extra="WARC-Truncated: length\r\n")
    assert len(bodies) == 1 and (PAGE * 20).startswith(bodies[0]) and not skipped
    plain_cut = http(PAGE[:30], extra=f"Content-Length: {len(PAGE)}\r\n")
    assert read_one(tmp_path, plain_cut) == ([], Counter(short_payload=1))
    exact = http(PAGE, extra=f"Content-Length: {len(PAGE)}\r\n")
    assert read_one(tmp_path, exact) == ([PAGE], Counter())
    # Only the gzip trailer (CRC, size) cut: the page is all there (warcio's example-trunc.warc).
    no_trailer = http(compressed[:-3], extra=f"Content-Encoding: gzip\r\nContent-Length: {len(compressed)}\r\n")
    assert read_one(tmp_path, no_trailer) == ([PAGE * 20], Counter(kept_cut_gzip_trailer=1))


# ---------------------------------------------------------------- formats told by their bytes


def compressed(data: bytes, kind: str, per_record: list[bytes] | None = None) -> bytes:
    from fastwarc.stream_io import Lz4Writer, ZstdWriter
    import io

    if kind == "gzip":
        return gzip.compress(data)
    out = io.BytesIO()
    writer = {"lz4": Lz4Writer, "zstd": ZstdWriter}[kind](out)
    for part in per_record or [data]:
        writer.write(part)
        writer.finish()  # one frame per record, like a .warc.gz with a member per record
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("kind", ["gzip", "lz4", "zstd"])
@pytest.mark.parametrize("name", ["x.warc.{ext}", "crawl-00001", "x.bin"])
def test_compressed_warc_is_read_whatever_its_name(tmp_path, kind, name):
    records = messy_records()
    path = tmp_path / name.format(ext={"gzip": "gz", "lz4": "lz4", "zstd": "zst"}[kind])
    path.write_bytes(compressed(b"".join(records), kind, records))
    urls = [r.url.rsplit("/", 1)[1] for r in iter_records(path)]
    assert urls == PAGE_URLS
    assert detect_format(path) in ("warc", "wet") and expand_inputs(str(tmp_path)) == [path]


def test_other_formats_told_by_their_first_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "lines").write_bytes(compressed(b'{"text": "one"}\n{"text": "two"}\n', "zstd"))
    pq.write_table(pa.table({"text": ["pq"]}), tmp_path / "table")
    (tmp_path / "page").write_bytes(b"<!DOCTYPE html><html><body>x</body></html>")
    (tmp_path / "old").write_bytes(b"filedesc://x.arc 0.0.0.0 20040101000000 text/plain 0\n")
    (tmp_path / "image").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert {p.name: detect_format(p) for p in expand_inputs(str(tmp_path))} == {
        "lines": "jsonl", "table": "parquet", "page": "html", "old": "arc"}
    assert [r.text for r in iter_records(tmp_path / "lines")] == ["one", "two"]
    with pytest.raises(LmforgeError, match="cannot tell its format"):
        detect_format(tmp_path / "image")


# ---------------------------------------------------------------- files that cannot be read at all


def bad_files(tmp_path) -> dict:
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    noise = random.Random(0).randbytes(5000)
    files = {"empty.warc.gz": b"", "empty.warc": b"", "empty.wet.gz": b"", "noise.warc.gz": noise,
             "noise.warc": noise, "noise.wet.gz": noise, "noise.parquet": noise, "noise.jsonl.gz": noise,
             "gzip-noise.warc.gz": b"\x1f\x8b\x08\x00" + noise, "latin1.jsonl": '{"text": "café"}\n'.encode("latin-1"),
             "noise.arc.gz": noise, "empty.jsonl": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    pq.write_table(pa.table({"text": [1, 2, 3]}), tmp_path / "ints.parquet")
    return sorted(tmp_path.iterdir())


def test_unreadable_files_raise_one_named_error(tmp_path):
    from lmforge.collect.readers import UnreadableInput

    for path in bad_files(tmp_path):
        with pytest.raises(UnreadableInput) as info:
            list(iter_records(path))
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message and len(message) < 320, message
    with pytest.raises(UnreadableInput, match="holds int64, not text"):
        list(iter_records(tmp_path / "ints.parquet"))
    with pytest.raises(UnreadableInput, match="empty file"):
        list(iter_records(tmp_path / "empty.warc.gz"))


_MAGICS = [b"", b"\x1f\x8b\x08\x00", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"WARC/1.1\r\n", b"PAR1", b"{\"text\": ",
           b"filedesc://"]
_NAMES = ["x.warc.gz", "x.warc", "x.wet.gz", "x.arc.gz", "x.parquet", "x.jsonl", "x.jsonl.gz", "x.html", "x.warc.lz4",
          "x.warc.zst", "noname"]


def test_any_bytes_under_any_name_give_records_or_one_unreadable_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from lmforge.collect.readers import UnreadableInput

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(_MAGICS), st.binary(max_size=600), st.sampled_from(_NAMES))
    def check(magic, rest, name):
        path = tmp_path / name
        path.write_bytes(magic + rest)
        skipped = Counter()
        try:
            fmt = detect_format(path)
        except LmforgeError:
            return  # a name and bytes that say nothing: the folder walk leaves it out
        try:
            for record in iter_records(path, fmt, skipped=skipped):
                assert record.body is not None or record.text is not None
        except UnreadableInput as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)

    check()


def test_a_gzip_header_with_damaged_data_is_no_known_format(tmp_path):
    path = tmp_path / "noname"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(11))  # found by the property test above
    with pytest.raises(LmforgeError, match="cannot tell its format"):
        detect_format(path)
