"""A hostile pass over the API: damaged run files, links out of the runs folder, bad numbers and
bodies. Every answer is a 4xx with a JSON error that names the problem, never a 500."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lmforge.serve.generation import MAX_SEED


def damage(source: Path, root: Path, name: str, how) -> Path:
    run = root / name
    shutil.copytree(source, run, symlinks=True)
    how(run)
    return run


def first(run: Path, pattern: str) -> Path:
    return sorted(run.glob(pattern))[0]


def cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def odd_parquet(path: Path) -> None:
    """Valid Parquet of other values than the clean stage writes: NaN, a null text, bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b"], "url": ["u", None], "text": ["Title\nSome words here", None],
                             "language": ["en", None], "language_score": [float("nan"), float("inf")],
                             "raw": [b"\xff\xfe", b"ok"]}), path)


DAMAGE = {
    "stats-cut": lambda r: cut(r / "stats" / "clean.json", 30),
    "stats-list": lambda r: (r / "stats" / "clean.json").write_text("[1, 2, 3]"),
    "stats-shape": lambda r: (r / "stats" / "clean.json").write_text('{"records": "x", "steps": {"url": 5}, "sources": 7}'),
    "stats-out": lambda r: ((r / "stats" / "clean.json").unlink(), (r / "stats" / "clean.json").symlink_to("/etc/hostname")),
    "metrics-bad": lambda r: (r / "metrics.jsonl").write_bytes(
        b'{"kind": "train", "step": "x", "ms": "y", "loss": 1}\n[1, 2]\n5\n\xff\xfe\n'
        b'{"kind": "train", "step": 3, "ms": NaN, "loss": Infinity}\n{"kind": "val", "val_loss": NaN, "val": 1}\n{"kind": "tr'),
    "parquet-cut": lambda r: cut(first(r, "docs/*.parquet"), 200),
    "parquet-junk": lambda r: first(r, "docs/*.parquet").write_bytes(b"PAR1" + b"x" * 100 + b"PAR1"),
    "warc-junk": lambda r: first(r, "crawl/*.warc*").write_bytes(b"WARC/1.0\r\nnot a warc" * 50),
    "parquet-odd": lambda r: odd_parquet(first(r, "docs/*.parquet")),
    "config-junk": lambda r: (r / "config.toml").write_text("[model\nseq_len = "),
    "tokenizer-junk": lambda r: (r / "tokenizer" / "tokenizer.json").write_text("{nope"),
    "checkpoint-junk": lambda r: (first(r, "checkpoints/step_*") / "model.safetensors").write_bytes(b"garbage"),
}


@pytest.fixture(scope="module")
def hostile(runs_root, tmp_path_factory):
    """A runs folder of damaged copies of the tiny run, and a client on it."""
    from starlette.testclient import TestClient

    from lmforge.serve.app import create_app

    root, tiny = runs_root.parent / "hostile", runs_root / "tiny"
    root.mkdir()
    for name, how in DAMAGE.items():
        damage(tiny, root, name, how)
    damage(tiny, root, "tiny", lambda r: None)  # whole; its model.json names a tokenizer outside this folder
    shape = damage(tiny, root, "other-shape", lambda r: None)  # a checkpoint of another model, beside this run's tokenizer
    model_json = first(shape, "checkpoints/step_*") / "model.json"
    info = json.loads(model_json.read_text())
    info["model"]["n_embd"] = 128
    model_json.write_text(json.dumps(info))
    vocab = damage(tiny, root, "other-vocab", lambda r: None)  # a tokenizer of another size than the model's
    import pyarrow.parquet as pq

    from lmforge.tokenizer.bpe import Tokenizer
    from lmforge.tokenizer.train import train_tokenizer

    texts = pq.read_table(vocab / "docs", columns=["text"]).column(0).to_pylist()
    shutil.rmtree(vocab / "tokenizer")
    train_tokenizer(texts, vocab_size=280).save(vocab / "tokenizer")
    info = json.loads((first(vocab, "checkpoints/step_*") / "model.json").read_text())
    info.pop("tokenizer", None)
    (first(vocab, "checkpoints/step_*") / "model.json").write_text(json.dumps(info))
    assert Tokenizer.load(vocab / "tokenizer").vocab_size == 280
    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(runs_root / "tiny" / "docs", outside / "docs")
    linked = damage(tiny, root, "docs-out", lambda r: shutil.rmtree(r / "docs"))
    (linked / "docs").symlink_to(outside / "docs", target_is_directory=True)
    with TestClient(create_app(root), raise_server_exceptions=False) as client:
        yield client


def error(response, status: int | tuple = (404, 409, 422)) -> str:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    return body["error"]


ENDPOINTS = ["", "/funnel", "/facets", "/documents?kind=docs&size=5", "/documents?kind=docs&size=5&q=python",
             "/documents?kind=docs&size=5&offset=3", "/document?kind=docs&cursor=0.0.3", "/metrics", "/fewshot"]


@pytest.mark.parametrize("run", [*DAMAGE, "other-shape", "other-vocab", "docs-out"])
def test_a_damaged_run_is_never_a_500(hostile, run):
    for endpoint in ENDPOINTS:
        r = hostile.get(f"/api/runs/{run}{endpoint}")
        assert r.status_code == 200 or 400 <= r.status_code < 500, (endpoint, r.status_code, r.text[:300])
        if r.status_code != 200:
            error(r)
    for r in (hostile.post("/api/tokenize", json={"run": run, "text": "hello"}),
              hostile.post(f"/api/runs/{run}/generate", json={"prompt": "The ", "max_tokens": 2, "seed": 1})):
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        if r.status_code != 200:
            error(r)


def test_the_runs_list_survives_a_damaged_run_and_names_the_file(hostile):
    runs = {r["name"]: r for r in hostile.get("/api/runs").json()["runs"]}
    assert set(runs) >= set(DAMAGE)
    assert "stats/clean.json" in runs["stats-cut"]["problems"][0] and "--force clean" in runs["stats-cut"]["problems"][0]
    assert "outside the runs folder" in runs["stats-out"]["problems"][0]
    assert runs["metrics-bad"]["val_loss"] is None and runs["metrics-bad"]["problems"] == []


@pytest.mark.parametrize("run, endpoint, words", [
    ("stats-cut", "/funnel", ["stats/clean.json", "not readable JSON", "--force clean"]),
    ("stats-list", "/funnel", ["not a JSON object"]),
    ("stats-shape", "/facets", ["does not have the clean stage's counts"]),
    ("stats-out", "/funnel", ["outside the runs folder"]),
    ("parquet-cut", "/documents?kind=docs", ["docs/part-00000.parquet", "not a readable Parquet file", "--force clean"]),
    ("parquet-junk", "/document?kind=docs&cursor=0.0.0", ["not a readable Parquet file"]),
    ("parquet-cut", "/fewshot", ["not a readable Parquet file"]),
    ("checkpoint-junk", "/fewshot", ["model.safetensors"]),
    ("other-shape", "/fewshot", ["model.safetensors"]),
    ("other-vocab", "/fewshot", ["280 tokens", "300", "--force train"]),
])
def test_a_damaged_file_is_named_with_the_fix(hostile, run, endpoint, words):
    message = error(hostile.get(f"/api/runs/{run}{endpoint}"), (404, 409))
    assert all(w in message for w in words), message


@pytest.mark.parametrize("endpoint", ["/documents?kind=docs", "/document?kind=docs&cursor=0.0.0", "/facets", "/fewshot"])
def test_a_docs_folder_linked_out_of_the_runs_folder_is_not_read(hostile, endpoint):
    assert "docs-out/docs points outside the runs folder" in error(hostile.get(f"/api/runs/docs-out{endpoint}"), 404)


def test_metrics_lines_that_are_not_objects_or_numbers_are_skipped(hostile):
    page = hostile.get("/api/runs/metrics-bad/metrics").json()
    assert [r.get("step") for r in page["rows"]] == ["x", 3, None]
    assert page["rows"][1]["ms"] is None and page["rows"][1]["loss"] is None  # NaN and Infinity: null, valid JSON
    assert page["eta_s"] is None


def test_a_raw_page_from_a_broken_warc_is_a_clear_error(hostile, runs_root):
    doc = hostile.get("/api/runs/warc-junk/document?kind=docs&cursor=0.0.0").json()
    # warcio reads a junk file as holding no record: the record is then not in the crawl
    assert "crawl" in error(hostile.get("/api/runs/warc-junk/raw", params={"id": doc["id"]}), (404, 409))


# -- numbers, types and bodies --------------------------------------------------------------------

GENERATE = "/api/runs/tiny/generate"


@pytest.mark.parametrize("field, value", [
    *[("temperature", v) for v in ("NaN", "Infinity", "-Infinity", "1e308", "1e999", "-1", "true", '"0.5"')],
    *[("top_p", v) for v in ("NaN", "Infinity", "-0.0", "1.0000001", "0", "false")],
    *[("top_k", v) for v in ("-5", "1e30", "1.5", "true", "null", '"5"')],
    *[("seed", v) for v in ("-1", "1e400", "NaN", "1.5", str(MAX_SEED + 1), str(2**63), "99999999999999999999999", "true")],
    *[("n", v) for v in ("0", "-1", "9", "1e9", "NaN", "99999999999999999999", "1.0")],
    *[("max_tokens", v) for v in ("0", "-1", "65", "1e9", "NaN", "99999999999999999999", "2.0", '"2"')],
])
def test_bad_numbers_are_422_naming_the_field(hostile, field, value):
    body = '{"prompt": "The ", "max_tokens": 2, "%s": %s}' % (field, value)
    message = error(hostile.post(GENERATE, content=body, headers={"content-type": "application/json"}), 422)
    assert field in message, message


@pytest.mark.parametrize("body, content_type", [
    ("not json", "application/json"), ("", "application/json"), ("[]", "application/json"), ('"x"', "application/json"),
    ('{"prompt": 5}', "application/json"), ('{"prompt": null}', "application/json"), ('{"prompt": ["a"]}', "application/json"),
    ('{"prompt": "x"}', "text/plain"), ("{" * 100_000, "application/json"), (b'\xff\xfe{"prompt": "x"}', "application/json"),
    ('{"prompt": "\\ud800 x", "max_tokens": 2}', "application/json"), ('{"prompt": "ok \\udfff", "max_tokens": 2}', "application/json"),
])
def test_bad_generate_bodies_are_4xx_json(hostile, body, content_type):
    error(hostile.post(GENERATE, content=body, headers={"content-type": content_type}), (400, 422))


def test_a_lone_surrogate_is_refused_by_name(hostile):
    assert "surrogate" in error(hostile.post(GENERATE, content='{"prompt": "\\ud800"}', headers={"content-type": "application/json"}), 422)
    assert "surrogate" in error(hostile.post("/api/tokenize", content='{"run": "tiny", "text": "a\\udc00"}',
                                             headers={"content-type": "application/json"}), 422)
    error(hostile.post("/api/tokenize", content='{"run": "\\ud800", "text": "x"}', headers={"content-type": "application/json"}), 404)


def test_the_largest_seed_and_a_huge_top_k_still_generate(hostile):
    with hostile.stream("POST", GENERATE, json={"prompt": "The ", "max_tokens": 2, "seed": MAX_SEED, "n": 8, "top_k": 10**20}) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["seed"] for e in events if e["type"] == "start"] == [MAX_SEED + i for i in range(8)]


@pytest.mark.parametrize("query, status", [
    ("cursor=a.b.c", 422), ("cursor=1.2.3.4", 422), ("cursor=-1.0.0", 422), ("cursor=0.0.-1", 422), ("cursor=%00", 422),
    ("cursor=0.0." + "9" * 5000, 422), ("cursor=" + "9" * 30 + ".0.0", 200), ("cursor=0.99999999999.0", 200),
    ("offset=" + "9" * 30, 200), ("size=1e2", 422), ("size=NaN", 422), ("q=%ED%A0%80", 200), ("q=%FF%FE", 200),
    ("q=" + "%F0%9F%98%80" * 201, 422), ("reason=" + "x" * 50_000, 200), ("kind=../../etc", 422),
])
def test_bad_cursors_and_queries(hostile, query, status):
    r = hostile.get(f"/api/runs/stats-list/documents?kind=docs&{query}")
    if status == 200:
        assert r.status_code == 200 and r.json()["rows"] == []
    else:
        error(r, status)


@pytest.mark.parametrize("cursor", ["a.b.c", "9" * 30 + ".0.0", "0.0." + "9" * 40, "-1.0.0", "0.5.0"])
def test_bad_document_cursors_are_4xx(hostile, cursor):
    error(hostile.get("/api/runs/stats-list/document", params={"kind": "docs", "cursor": cursor}), (404, 422))


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/nope"), ("GET", "/nope"), ("DELETE", "/api/runs/tiny"), ("PUT", GENERATE), ("GET", GENERATE),
    ("GET", "/static/../runs.py"), ("GET", "/api/runs/%ED%A0%80"), ("GET", "/api/runs/tiny%00"), ("GET", "/api/runs/" + "a" * 5000),
    ("GET", "/api/runs/tiny/raw?id=%ED%A0%80"), ("GET", "/api/runs/tiny/metrics?offset=1e3"),
])
def test_unknown_routes_methods_and_names_answer_json(hostile, method, path):
    error(hostile.request(method, path), (404, 405, 422))


def test_a_symlinked_run_file_out_of_the_folder_is_refused_even_when_it_is_json(hostile, runs_root, tmp_path):
    outside = tmp_path / "clean.json"
    outside.write_text((runs_root / "tiny" / "stats" / "clean.json").read_text())
    link = runs_root.parent / "hostile" / "stats-out" / "stats" / "clean.json"
    link.unlink()
    link.symlink_to(outside)
    try:
        assert "outside the runs folder" in error(hostile.get("/api/runs/stats-out/funnel"), 404)
    finally:
        link.unlink()
        link.symlink_to("/etc/hostname")
    assert os.path.islink(link)


def test_parquet_values_json_lacks_are_sent_as_null_or_text(hostile):
    page = hostile.get("/api/runs/parquet-odd/documents?kind=docs").json()
    assert [(r["language_score"], r["raw"], r["chars"]) for r in page["rows"]] == [(None, "\ufffd\ufffd", 21), (None, "ok", 0)]
    doc = hostile.get("/api/runs/parquet-odd/document?kind=docs&cursor=0.0.1").json()
    assert doc["text"] == "" and doc["language_score"] is None
    assert hostile.get("/api/runs/parquet-odd/documents?kind=docs&q=words").json()["rows"][0]["id"] == "a"
