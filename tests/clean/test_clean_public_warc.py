"""lmforge's readers and clean stage on public WARC/ARC test files (warcio's test data, see
tests/data/public/README.md), checked against warcio's own ArchiveIterator."""

import gzip
import io
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lmforge.collect.readers import iter_records

DATA = Path(__file__).parent.parent / "data" / "public" / "warcio"
FILES = sorted(p.name for p in DATA.iterdir() if p.name not in ("LICENSE", "NOTICE"))
EXAMPLE_TEXT = "This domain is established to be used for illustrative examples in documents."


def warcio_payloads(path: Path) -> list[tuple[str, int]]:
    """(URL, payload length) of each response or resource with a payload, as warcio reads them.

    warcio refuses a WARC gzipped as one stream (example-bad*: it wants a gzip member per
    record, and says to run ``warcio recompress``); it gets the decompressed bytes instead."""
    from warcio.archiveiterator import ArchiveIterator

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    out = []
    for rec in ArchiveIterator(io.BytesIO(data), arc2warc=True):
        if rec.rec_type in ("response", "resource"):
            payload = rec.content_stream().read()  # chunking and Content-Encoding undone
            if payload:
                out.append((rec.rec_headers.get_header("WARC-Target-URI"), len(payload)))
    return out


@pytest.mark.parametrize("name", FILES)
def test_reader_yields_what_warcio_yields(name):
    skipped = Counter()
    ours = [(r.url, len(r.body)) for r in iter_records(DATA / name, skipped=skipped) if r.body]
    assert ours == warcio_payloads(DATA / name)
    assert not {"truncated", "unreadable", "short_payload"} & set(skipped), skipped


def test_files_are_what_the_comparison_needs():
    # The cases these files stand for are really in them (so the comparison above means something).
    assert b"Transfer-Encoding: chunked" in (DATA / "example-iana.org-chunked.warc").read_bytes()
    assert b"Content-Encoding: gzip" in gzip.decompress((DATA / "example.warc.gz").read_bytes())
    assert not (DATA / "example-bad.warc.gz.bad").name.endswith((".gz", ".warc"))  # told by its bytes


def test_gzip_body_cut_only_in_its_trailer_is_kept_and_counted():
    # example-trunc.warc: the record's Content-Length leaves out the last 2 bytes of the gzip
    # trailer (its size field); the page itself is complete, and warcio keeps it too.
    skipped = Counter()
    bodies = [r.body for r in iter_records(DATA / "example-trunc.warc", skipped=skipped)]
    assert len(bodies) == 1 and bodies[0].rstrip().endswith(b"</html>") and len(bodies[0]) == 1270
    assert skipped["kept_cut_gzip_trailer"] == 1 and "short_payload" not in skipped


def test_clean_keeps_every_real_page(tmp_path):
    from lmforge.clean.pipeline import run_stage
    from lmforge.config import config_from_dict
    from lmforge.rundir import RunDir

    inputs = [{"path": str(DATA / name), "source": name.replace(".", "_")} for name in FILES
              if name != "bad.arc"]  # bad.arc's name says what it is; its records have no payload
    inputs.append({"path": str(DATA / "bad.arc"), "format": "arc", "source": "bad"})
    cfg = config_from_dict({"clean": {"inputs": inputs, "steps": ["url", "extract"], "languages": [],
                                      "exact_dedup": False, "minhash_dedup": False, "url_dedup": False}})
    rd = RunDir(tmp_path / "run")
    stats = run_stage(cfg, rd)
    docs = pq.read_table(rd.docs).to_pylist()
    by_source = Counter(d["source"] for d in docs)
    # Every HTML page of every file is a document: gzip Content-Encoding, chunked, a resource
    # record, ARC, a whole-file gzip, a gzip trailer cut by the archive.
    assert by_source == Counter({"example_warc_gz": 1, "example_warc": 1, "example_arc": 1, "example_arc_gz": 1,
                                 "example-iana_org-chunked_warc": 1, "example-resource_warc_gz": 1,
                                 "example-trunc_warc": 1, "example-bad_warc_gz_bad": 1,
                                 "example-bad-non-chunked_warc_gz": 1})
    for d in docs:
        if "iana.org" in d["url"]:
            assert "Root Zone" in d["text"] and "<" not in d["text"]
        else:
            assert EXAMPLE_TEXT in d["text"]
    rejects = Counter((r["source"], r["reason"]) for r in pq.read_table(rd.rejects).to_pylist())
    # Only what is not an HTML page goes: httpbin's JSON answers, a 302, bad.arc's empty capture.
    assert rejects == Counter({("post-test_warc_gz", "non_html"): 3, ("example-bad_warc_gz_bad", "http_status"): 1,
                               ("bad", "non_html"): 1})
    assert stats["unreadable"] == {} and stats["reader_kept_despite"] == {"cut_gzip_trailer": 1}
    assert "short_payload" not in stats["reader_skipped"]
