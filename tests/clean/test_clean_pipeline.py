import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from clean_texts import BREAD, FRENCH, KOREAN, RIVER, RUSSIAN, page, paragraphs_html

from lmforge.cli import main
from lmforge.config import config_from_dict
from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir

LANGS = ["en", "ko", "ru"]


def write_warc(path: Path, pages: list[tuple]) -> Path:
    """A gzipped WARC with one response per (url, content type, body[, status]), plus one request record."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
        writer.write_record(writer.create_warc_record("https://example.com/", "request", http_headers=request))
        for url, ctype, body, *status in pages:
            headers = StatusAndHeaders(status[0] if status else "200 OK", [("Content-Type", ctype)],
                                       protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                          http_headers=headers))
    return path


def html(title: str, text: str, charset: str = "utf-8") -> bytes:
    return page(title, paragraphs_html(text), charset_meta=charset).encode(charset)


PAGES = [
    ("https://example.com/river", "text/html; charset=utf-8", html("River", RIVER)),
    ("https://example.com/seoul", "text/html; charset=utf-8", html("서울", KOREAN)),
    # windows-1251 named only by <meta charset>, not by the HTTP header.
    ("https://example.ru/moscow", "text/html", html("Москва", RUSSIAN, "windows-1251")),
    ("https://example.fr/lyon", "text/html", html("Lyon", FRENCH)),
    ("https://mirror.example.net/river", "text/html", html("River", RIVER)),
    ("https://example.com/bread", "text/html", html("Bread", BREAD + "\n\nWrite to baker@bakery-example.com today.")),
    ("https://copy.example.net/bread", "text/html",
     html("Bread", BREAD.replace("cool kitchen", "cold kitchen") + "\n\nWrite to baker@bakery-example.com today.")),
    ("https://example.com/logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100)),
    ("https://example.com/empty", "text/html", page("", "").replace("<h1></h1>", "").encode()),
    ("https://example.com/short", "text/html", html("Short", "A very short note about nothing much.")),
    ("https://example.com/missing", "text/html", html("Not found", BREAD), "404 Not Found"),
]
EXPECTED_KEPT = ["https://example.com/river", "https://example.com/seoul", "https://example.ru/moscow",
                 "https://example.com/bread"]
EXPECTED_REJECTS = {
    "https://example.fr/lyon": ("language", "wrong_language"),
    "https://mirror.example.net/river": ("exact_dedup", "exact_duplicate"),
    "https://copy.example.net/bread": ("near_dedup", "near_duplicate"),
    "https://example.com/logo.png": ("extract", "non_html"),
    "https://example.com/empty": ("extract", "empty_extraction"),
    "https://example.com/short": ("gopher_repetition", "top_3_gram"),  # a few words: any 3-gram is a big share
    "https://example.com/missing": ("extract", "http_status"),
}


def run_clean(tmp_path: Path, workers: int = 1, name: str = "run", **clean) -> tuple[dict, RunDir]:
    from lmforge.clean.pipeline import run_stage

    warc = tmp_path / "site.warc.gz"
    if not warc.exists():
        write_warc(warc, PAGES)
    data = {"clean": {"inputs": [{"path": str(warc), "source": "web"}], "languages": LANGS,
                      "workers": workers, **clean}}
    cfg = config_from_dict(data)
    rd = RunDir(tmp_path / name)
    return run_stage(cfg, rd), rd


def read(folder: Path) -> list[dict]:
    return pq.read_table(folder).to_pylist()


def test_end_to_end_docs_rejects_and_stats(tmp_path):
    stats, rd = run_clean(tmp_path)
    docs = read(rd.docs)
    assert [d["url"] for d in docs] == EXPECTED_KEPT
    assert {d["url"]: d["language"] for d in docs} == {EXPECTED_KEPT[0]: "en", EXPECTED_KEPT[1]: "ko",
                                                       EXPECTED_KEPT[2]: "ru", EXPECTED_KEPT[3]: "en"}
    assert all(d["source"] == "web" and d["language_score"] >= 0.65 and d["n_words"] >= 50 for d in docs)
    assert "Москва стоит на берегах реки" in docs[2]["text"]  # decoded from windows-1251
    assert "Write to <EMAIL> today." in docs[3]["text"] and "bakery-example" not in docs[3]["text"]
    assert "News Menu" not in docs[0]["text"]

    rejects = read(rd.rejects)
    assert {r["url"]: (r["step"], r["reason"]) for r in rejects} == EXPECTED_REJECTS
    by_url = {r["url"]: r for r in rejects}
    river_id = docs[0]["id"]
    assert by_url["https://mirror.example.net/river"]["detail"] == river_id
    assert by_url["https://copy.example.net/bread"]["detail"].startswith(docs[3]["id"])
    assert by_url["https://example.fr/lyon"]["detail"].startswith("fr:")

    assert stats["records"] == len(PAGES) and stats["docs"] == len(EXPECTED_KEPT)
    assert stats["reader_skipped"] == {"record_request": 1}
    steps = stats["steps"]
    assert list(steps) == ["url", "extract", "language", "gopher_repetition", "gopher_quality", "c4", "fineweb",
                           "pii", "url_dedup", "exact_dedup", "near_dedup"]
    for name, counts in steps.items():
        dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
        assert counts["in"] == counts["out"] + dropped, name
    names = list(steps)
    for before, after in zip(names, names[1:]):
        assert steps[before]["out"] == steps[after]["in"]
    assert steps["url"]["in"] == len(PAGES) and steps["near_dedup"]["out"] == len(EXPECTED_KEPT)
    assert sum(v for c in steps.values() for k, v in c.items() if k.startswith("dropped_")) == len(rejects)
    assert steps["pii"]["masked_email"] == 2
    assert stats["sources"]["web"]["docs"] == len(EXPECTED_KEPT)
    assert stats["bytes_out"] == sum(len(d["text"].encode()) for d in docs)
    assert not list(rd.docs.glob(".*")) and not list(rd.rejects.glob(".*"))  # no temp files left


def test_two_workers_give_the_same_docs_as_one(tmp_path):
    _, rd1 = run_clean(tmp_path, workers=1, name="one")
    stats2, rd2 = run_clean(tmp_path, workers=2, name="two")
    assert stats2["shards"] > 1
    assert read(rd1.docs) == read(rd2.docs)
    assert read(rd1.rejects) == read(rd2.rejects)


def test_config_run_only_clean_writes_stats_and_marker(tmp_path):
    from lmforge.pipeline import run_pipeline

    warc = write_warc(tmp_path / "site.warc.gz", PAGES[:2])
    cfg = config_from_dict({"name": "r", "runs_dir": str(tmp_path / "runs"),
                            "clean": {"inputs": [{"path": str(warc)}], "languages": LANGS}})
    rd = run_pipeline(cfg, only=["clean"], log=lambda line: None)
    assert rd.is_complete("clean") and rd.read_stats("clean")["docs"] == 2
    assert {d["source"] for d in read(rd.docs)} == {"site"}


def test_no_inputs_names_the_fix(tmp_path):
    from lmforge.clean.pipeline import run_stage

    with pytest.raises(LmforgeError, match=r"\[\[clean.inputs\]\].*|seeds"):
        run_stage(config_from_dict({}), RunDir(tmp_path / "run"))
    with pytest.raises(LmforgeError, match="no such file"):
        run_stage(config_from_dict({"clean": {"inputs": [{"path": str(tmp_path / "missing/*.warc.gz")}]}}),
                  RunDir(tmp_path / "run"))


def test_ray_executor_without_ray_says_how_to_install(tmp_path, without_module):
    without_module("ray")
    with pytest.raises(LmforgeError, match=r"pip install 'lmforge\[ray\]'"):
        run_clean(tmp_path, executor="ray")
    assert not (tmp_path / "run").exists()  # refused before emptying anything


def test_ray_executor_gives_the_same_docs_and_stats_as_one_process(tmp_path, monkeypatch):
    """Ray tasks (a local Ray with 2 CPUs, started and stopped by the stage) run the same shards."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local, rd1 = run_clean(tmp_path, workers=1, name="local")
    on_ray, rd2 = run_clean(tmp_path, workers=2, name="ray", executor="ray")
    assert not ray.is_initialized()
    assert [(d["url"], d["text"]) for d in read(rd2.docs)] == [(d["url"], d["text"]) for d in read(rd1.docs)]
    assert sorted((r["url"], r["reason"]) for r in read(rd2.rejects)) == sorted(
        (r["url"], r["reason"]) for r in read(rd1.rejects))
    assert on_ray["executor"] == "ray" and on_ray["shards"] > 1

    def counts(stats):  # every step's in/out and drops, without its seconds
        return {step: {k: v for k, v in c.items() if k != "seconds"} for step, c in stats["steps"].items()}
    assert counts(on_ray) == counts(local)


def test_cli_cleans_jsonl_with_all_languages(tmp_path, capsys):
    data = tmp_path / "books.jsonl"
    rows = [{"id": "a", "text": RIVER}, {"id": "b", "text": FRENCH}, {"id": "c", "text": RIVER}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["clean", "--input", str(data), "--out", str(out), "--languages", "",
                 "--set", "clean.quality.min_words=40", "--set", "clean.c4.min_sentences=4"]) == 0
    docs = read(out / "docs")
    assert [(d["id"], d["source"], d["language"]) for d in docs] == [("a", "books", "en"), ("b", "books", "fr")]
    stats = json.loads((out / "stats" / "clean.json").read_text())
    assert stats["steps"]["exact_dedup"]["dropped_exact_duplicate"] == 1
    assert "kept 2 of 3 records" in capsys.readouterr().out


def test_cli_reports_bad_config_values(tmp_path, capsys):
    code = main(["clean", "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "clean.minhash.rows=0"])
    assert code == 2 and "minhash" in capsys.readouterr().err


def test_a_page_that_breaks_the_extractor_is_a_reject_not_a_crash(tmp_path, monkeypatch):
    import lmforge.clean.extract as extract

    real = extract.extract_text

    def fragile(html, url=None, fast=False, **kwargs):
        if "seoul" in (url or ""):
            raise ValueError("broken markup")
        return real(html, url, fast, **kwargs)

    monkeypatch.setattr(extract, "extract_text", fragile)
    stats, rd = run_clean(tmp_path)
    rejects = {r["url"]: r for r in read(rd.rejects)}
    assert rejects["https://example.com/seoul"]["reason"] == "extraction_error"
    assert rejects["https://example.com/seoul"]["detail"] == "ValueError: broken markup"
    assert stats["docs"] == len(EXPECTED_KEPT) - 1


def test_docs_files_have_row_groups_of_bounded_text(tmp_path, monkeypatch):
    """Readers decode a whole row group at once: its text is bounded, so later stages stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmforge.clean import outputs

    monkeypatch.setattr(outputs, "ROW_GROUP_BYTES", 10_000)
    texts = [("word " * (50 + i % 400)).strip() for i in range(300)]
    outputs.write_table(pa.table({"id": [str(i) for i in range(300)], "text": texts}), tmp_path / "d.parquet")
    meta = pq.ParquetFile(tmp_path / "d.parquet").metadata
    assert meta.num_row_groups > 10 and meta.num_rows == 300
    assert pq.read_table(tmp_path / "d.parquet").column("text").to_pylist() == texts
    groups = [pq.ParquetFile(tmp_path / "d.parquet").read_row_group(g) for g in range(meta.num_row_groups)]
    assert max(sum(len(t.encode()) for t in g.column("text").to_pylist()) for g in groups) < 3 * 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["d.parquet"]  # written under a temporary name, then renamed


def test_a_crawl_gives_the_same_docs_whatever_its_record_order(tmp_path):
    """The crawl's own WARC files are in the order its threads happened to finish: clean orders
    their documents by URL, so two crawls of one site give the same documents and duplicates."""
    from lmforge.clean.pipeline import run_stage

    results = []
    for name, pages in (("a", PAGES), ("b", PAGES[::-1])):
        rd = RunDir(tmp_path / name)
        rd.crawl.mkdir(parents=True)
        write_warc(rd.crawl / "crawl-00000.warc.gz", pages[:5])
        write_warc(rd.crawl / "crawl-00001.warc.gz", pages[5:])
        run_stage(config_from_dict({"clean": {"languages": LANGS}}), rd)
        docs = [(d["url"], d["text"]) for d in read(rd.docs)]
        results.append((docs, sorted((r["url"], r["reason"]) for r in read(rd.rejects))))
    assert results[0] == results[1]
    urls = [url for url, _ in results[0][0]]
    assert urls == sorted(urls) and len(urls) == 4


def _stopped_after_saving_every_shard(tmp_path, monkeypatch, name, **clean):
    """A clean run stopped after its shards were saved, before its outputs were written."""
    from lmforge.clean import outputs

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(outputs, "write_outputs", stop)
        with pytest.raises(KeyboardInterrupt):
            run_clean(tmp_path, workers=2, name=name, **clean)
    return RunDir(tmp_path / name)


def test_an_interrupted_clean_resumes_at_the_shards_it_had_not_finished(tmp_path, monkeypatch, capsys):
    fresh, rd0 = run_clean(tmp_path, workers=2, name="fresh")
    assert not rd0.clean_parts.exists()  # removed once the outputs are written
    rd = _stopped_after_saving_every_shard(tmp_path, monkeypatch, "cut")
    parts = sorted(rd.clean_parts.glob("*.stats.json"))
    assert len(parts) == fresh["shards"] > 2
    for part in parts[2:]:
        part.unlink()  # as if the run had been killed after its first two shards
    capsys.readouterr()
    again, rd = run_clean(tmp_path, workers=2, name="cut")
    assert f"[clean] resuming: 2 of {fresh['shards']} shards were done" in capsys.readouterr().out
    assert read(rd.docs) == read(rd0.docs) and read(rd.rejects) == read(rd0.rejects)
    assert _same_counts(again, fresh)
    assert not rd.clean_parts.exists()


def _same_counts(a, b):
    def counts(stats):
        return {step: {k: v for k, v in c.items() if k != "seconds"} for step, c in stats["steps"].items()}
    return counts(a) == counts(b) and a["docs"] == b["docs"]


def test_parts_made_with_other_settings_are_not_mixed_in(tmp_path, monkeypatch, capsys):
    rd = _stopped_after_saving_every_shard(tmp_path, monkeypatch, "cut")
    assert list(rd.clean_parts.glob("*.stats.json"))
    capsys.readouterr()
    changed, rd = run_clean(tmp_path, workers=2, name="cut", languages=["en"])
    assert "resuming" not in capsys.readouterr().out
    expected, rd_en = run_clean(tmp_path, workers=2, name="en", languages=["en"])
    assert read(rd.docs) == read(rd_en.docs) and _same_counts(changed, expected)
    assert changed["steps"]["language"]["dropped_wrong_language"] > 1


def test_outputs_are_merged_from_the_parts_in_order_across_files(tmp_path, monkeypatch):
    """docs/ and rejects/ are written by a merge over the saved parts, a file per DOCS_PER_FILE
    rows: the same rows, in the same order, as in one file; a duplicate's reject keeps its text."""
    from lmforge.clean import outputs

    whole, rd_whole = run_clean(tmp_path, workers=2, name="whole")
    monkeypatch.setattr(outputs, "DOCS_PER_FILE", 2)
    split, rd = run_clean(tmp_path, workers=2, name="split")
    assert len(list(rd.docs.glob("*.parquet"))) == 2 and len(list(rd.rejects.glob("*.parquet"))) == 4
    assert read(rd.docs) == read(rd_whole.docs) and read(rd.rejects) == read(rd_whole.rejects)
    assert _same_counts(split, whole) and split["docs"] == 4
    duplicates = {r["url"]: r for r in read(rd.rejects) if r["step"].endswith("dedup")}
    assert set(duplicates) == {"https://mirror.example.net/river", "https://copy.example.net/bread"}
    assert all(len(r["text"]) > 100 for r in duplicates.values())


def test_an_error_while_writing_the_outputs_leaves_no_file_half_written(tmp_path, monkeypatch):
    from lmforge.clean import outputs

    monkeypatch.setattr(outputs, "DOCS_PER_FILE", 2)
    monkeypatch.setattr(outputs, "ROW_GROUP_ROWS", 1)  # the third document is on disk, under a temporary name
    real = outputs._PartWriter.add
    calls = []

    def failing(self, row):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        real(self, row)

    monkeypatch.setattr(outputs._PartWriter, "add", failing)
    with pytest.raises(OSError, match="disk full"):
        run_clean(tmp_path, workers=1, name="run")
    rd = RunDir(tmp_path / "run")
    assert [p.name for p in rd.docs.iterdir()] == ["part-00000.parquet"]  # the full one, and no other
    assert len(read(rd.docs)) == 2 and not list(rd.rejects.iterdir())
    assert not rd.is_complete("clean")
