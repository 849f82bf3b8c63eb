"""The HTTP API on a real tiny run: every endpoint, its 4xx answers, and path traversal attempts."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from lmforge.rundir import RunDir

STAGES = ["crawl", "clean", "tokenizer", "tokenize", "train", "sample", "report"]


@pytest.fixture(scope="module")
def client(runs_root):
    from starlette.testclient import TestClient

    from lmforge.serve.app import create_app

    with TestClient(create_app(runs_root)) as c:
        yield c


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def generate(client, run="tiny", **body):
    body = {"prompt": "The ", "max_tokens": 12, "seed": 7, "n": 1, **body}
    with client.stream("POST", f"/api/runs/{run}/generate", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r)


def texts(events) -> list[str]:
    out: dict[int, str] = {}
    for e in events:
        if e["type"] in ("token", "end"):
            out[e["sample"]] = out.get(e["sample"], "") + e["text"]
    return [out[k] for k in sorted(out)]


# -- runs ------------------------------------------------------------------------------------

def test_runs_lists_each_run_with_its_stages_and_figures(client, runs_root):
    data = client.get("/api/runs").json()
    by_name = {r["name"]: r for r in data["runs"]}
    assert set(by_name) == {"tiny", "tiny-b", "partial"}
    tiny, rd = by_name["tiny"], RunDir(runs_root / "tiny")
    assert [s["stage"] for s in tiny["stages"]] == STAGES
    assert all(s["state"] == "complete" for s in tiny["stages"])
    assert tiny["docs"] == rd.read_stats("clean")["docs"] and tiny["pages"] == rd.read_stats("crawl")["fetched"]
    assert tiny["tokens"] == rd.read_stats("tokenize")["tokens"] and tiny["params"] == rd.read_stats("train")["params"]
    last_val = [json.loads(x) for x in rd.metrics.read_text().splitlines() if '"val"' in x][-1]
    assert tiny["val_loss"] == last_val["val_loss"]
    partial = by_name["partial"]
    assert all(s["state"] != "complete" for s in partial["stages"])
    assert all(s["command"].startswith("lmforge ") for s in partial["stages"])


def test_run_detail_and_unknown_runs(client):
    detail = client.get("/api/runs/tiny").json()
    assert detail["has_checkpoint"] and detail["has_tokenizer"] and detail["has_crawl"]
    assert detail["max_steps"] == 150 and detail["seq_len"] == 64
    r = client.get("/api/runs/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"] and "tiny" in r.json()["error"]


@pytest.mark.parametrize("path", [
    "/api/runs/../funnel", "/api/runs/%2e%2e/funnel", "/api/runs/..%2f..%2fetc/funnel", "/api/runs/%2fetc/funnel",
    "/api/runs/tiny%2f..%2f..%2f/funnel", "/api/runs/.complete/funnel", "/static/../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fapp.py", "/static/%2e%2e/app.py",
    "/api/runs/tiny/document?cursor=../../etc", "/api/runs/~root/funnel",
])
def test_path_traversal_is_refused(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    assert b"root:" not in r.content and b"create_app" not in r.content


def test_a_symlink_out_of_the_runs_folder_is_not_a_run(client, runs_root, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(runs_root / "partial", outside)
    (runs_root / "linked").symlink_to(outside, target_is_directory=True)
    try:
        assert client.get("/api/runs/linked").status_code == 404
        assert "linked" not in {r["name"] for r in client.get("/api/runs").json()["runs"]}
    finally:
        (runs_root / "linked").unlink()


def test_pages_and_static_files_are_served_with_a_strict_policy(client):
    for path in ("/", "/data", "/tokenizer", "/training", "/playground", "/static/app.js", "/static/app.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/static/nope.js").status_code == 404


# -- data --------------------------------------------------------------------------------------

def test_funnel_is_stats_clean_json(client, runs_root):
    stats = RunDir(runs_root / "tiny").read_stats("clean")
    f = client.get("/api/runs/tiny/funnel").json()
    assert f["records"] == stats["records"] and f["docs"] == stats["docs"]
    assert [s["step"] for s in f["steps"]] == list(stats["steps"])
    for s in f["steps"]:
        counts = stats["steps"][s["step"]]
        assert (s["in"], s["out"]) == (counts["in"], counts["out"])
        assert s["dropped"] == {k[8:]: v for k, v in counts.items() if k.startswith("dropped_")}
    r = client.get("/api/runs/partial/funnel")
    assert r.status_code == 404 and "--until clean" in r.json()["error"]


def test_facets_come_from_the_stats_and_the_documents(client, runs_root):
    f = client.get("/api/runs/tiny/facets").json()
    stats = RunDir(runs_root / "tiny").read_stats("clean")
    assert set(f["steps"]) == {s for s, c in stats["steps"].items() if any(k.startswith("dropped_") for k in c)}
    assert f["languages"] == sorted(set(pq.read_table(runs_root / "tiny" / "docs", columns=["language"]).column(0).to_pylist()))
    assert f["sources"] == ["web"]


def walk(client, query: str, size: int) -> list[dict]:
    rows, cursor = [], None
    for _ in range(1000):
        url = f"/api/runs/tiny/documents?size={size}&{query}" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url).json()
        rows += page["rows"]
        cursor = page["next"]
        if not cursor:
            return rows
    raise AssertionError("paging did not end")


def test_paging_follows_cursors_through_every_document(client, runs_root):
    table = pq.read_table(runs_root / "tiny" / "docs").to_pylist()
    rows = walk(client, "kind=docs", 5)
    assert [r["id"] for r in rows] == [d["id"] for d in table]
    assert rows[0]["preview"] == table[0]["text"][:300] and rows[0]["chars"] == len(table[0]["text"])
    page = client.get("/api/runs/tiny/documents?kind=docs&size=5&offset=10").json()
    assert page["total"] == len(table) and [r["id"] for r in page["rows"]] == [d["id"] for d in table[10:15]]


@pytest.mark.parametrize("field", ["step", "reason"])
def test_rejects_filter_by_step_and_reason(client, runs_root, field):
    rejects = pq.read_table(runs_root / "tiny" / "rejects").to_pylist()
    for value in sorted({r[field] for r in rejects}):
        rows = walk(client, f"kind=rejects&{field}={value}", 2)
        assert [r["id"] for r in rows] == [r["id"] for r in rejects if r[field] == value]


def test_search_matches_url_or_text_ignoring_case(client, runs_root):
    docs = pq.read_table(runs_root / "tiny" / "docs").to_pylist()
    for q in ("PYTHON", "about", "tutorial", "zzzz-not-there"):
        expected = [d["id"] for d in docs if q.lower() in d["url"].lower() or q.lower() in d["text"].lower()]
        assert [r["id"] for r in walk(client, f"kind=docs&q={q}", 3)] == expected
    both = walk(client, "kind=docs&language=en&source=web&q=python", 50)
    assert len(both) == len([d for d in docs if "python" in (d["url"] + d["text"]).lower()])


@pytest.mark.parametrize("query", ["size=0", "size=201", "kind=secrets", "cursor=1.2", "cursor=a.b.c", "cursor=-1.0.0",
                                   "offset=-1", "offset=3&q=x", "q=" + "x" * 201])
def test_bad_document_queries_are_422_with_a_message(client, query):
    r = client.get(f"/api/runs/tiny/documents?{query}")
    assert r.status_code == 422 and r.json()["error"]


def test_document_and_its_raw_html(client, runs_root):
    docs = pq.read_table(runs_root / "tiny" / "docs").to_pylist()
    doc = client.get("/api/runs/tiny/document?kind=docs&cursor=0.0.3").json()
    assert doc["id"] == docs[3]["id"] and doc["text"] == docs[3]["text"] and doc["has_raw"]
    raw = client.get("/api/runs/tiny/raw", params={"id": doc["id"]}).json()
    assert raw["url"] == docs[3]["url"] and "<html" in raw["html"].lower()
    assert client.get("/api/runs/tiny/document?kind=docs&cursor=0.0.999").status_code == 404
    assert client.get("/api/runs/tiny/document?kind=docs&cursor=9.0.0").status_code == 404
    assert client.get("/api/runs/tiny/raw", params={"id": "<urn:uuid:nope>"}).status_code == 404
    assert client.get("/api/runs/partial/raw", params={"id": doc["id"]}).status_code == 404
    assert client.get("/api/runs/tiny/raw", params={"id": "x" * 201}).status_code == 422


# -- tokenizer ---------------------------------------------------------------------------------

TEXTS = ["hello world", "안녕하세요 세계", "emoji 👋🏽🎉 and <|endoftext|>", "", "  tabs\tand\nlines  "]


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_is_tokenizer_show(client, runs_root, text):
    from lmforge.tokenizer.bpe import Tokenizer
    from lmforge.tokenizer.show import show_tokens

    view = client.post("/api/tokenize", json={"run": "tiny", "text": text}).json()
    expected = show_tokens(Tokenizer.load(runs_root / "tiny" / "tokenizer"), text)
    assert {k: view[k] for k in expected} == expected
    assert view["bytes"] == len(text.encode())
    assert view["bytes_per_token"] == (round(view["bytes"] / view["count"], 3) if view["count"] else None)


def test_tokenize_limits_and_missing_tokenizer(client):
    assert client.post("/api/tokenize", json={"run": "tiny", "text": "x" * 100_001}).status_code == 422
    assert client.post("/api/tokenize", json={"run": "tiny"}).status_code == 422
    assert client.post("/api/tokenize", json={"run": "..", "text": "x"}).status_code == 404
    r = client.post("/api/tokenize", json={"run": "partial", "text": "x"})
    assert r.status_code == 409 and "--until tokenizer" in r.json()["error"]
    compare = [client.post("/api/tokenize", json={"run": n, "text": "the documents"}).json() for n in ("tiny", "tiny-b")]
    assert compare[0]["vocab_size"] == 300 and compare[1]["vocab_size"] == 280


# -- training ----------------------------------------------------------------------------------

def test_metrics_tail_returns_whole_lines_and_follows_the_file(client, runs_root):
    path = runs_root / "tiny-b" / "metrics.jsonl"
    original = path.read_bytes()
    try:
        whole = client.get("/api/runs/tiny-b/metrics?offset=0").json()
        assert whole["offset"] == len(original) and len(whole["rows"]) == original.count(b"\n")
        assert whole["max_steps"] == 150 and whole["train_state"] == "complete" and whole["eta_s"] == 0
        with open(path, "ab") as f:
            f.write(b'{"kind": "train", "step": 151, "loss": 3.5, "ms": 20}\n{"kind": "train", "st')
        more = client.get(f"/api/runs/tiny-b/metrics?offset={whole['offset']}").json()
        assert [r["step"] for r in more["rows"]] == [151] and more["size"] > more["offset"]  # the cut line waits
        path.write_bytes(original[:100])
        again = client.get(f"/api/runs/tiny-b/metrics?offset={more['offset']}").json()
        assert again["reset"] and again["offset"] <= 100
    finally:
        path.write_bytes(original)
    assert client.get("/api/runs/partial/metrics").json()["rows"] == []
    assert client.get("/api/runs/tiny/metrics?offset=-5").status_code == 422


def test_eta_is_steps_left_times_the_median_step_time():
    from lmforge.serve.runs import eta_seconds

    rows = [{"step": s, "ms": ms} for s, ms in [(1, 500), (2, 100), (3, 100), (4, 300)]]
    assert eta_seconds(rows, 10) == pytest.approx(6 * 0.2)
    assert eta_seconds(rows, None) is None and eta_seconds([], 10) is None


# -- playground --------------------------------------------------------------------------------

def test_generation_streams_tokens_with_probabilities(client, runs_root):
    from lmforge.sample.engine import Engine, load_model

    events = generate(client, n=2, max_tokens=10, seed=11, temperature=0.9, top_k=40)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("start") == 2 and kinds.count("end") == 2
    tokens = [e for e in events if e["type"] == "token"]
    assert tokens and all(len(e["top"]) == 5 and 0 < e["prob"] <= 1 for e in tokens)
    assert all(e["top"][0]["prob"] >= e["top"][-1]["prob"] for e in tokens)
    model, tok = load_model(runs_root / "tiny")  # the reference: the engine on its own, same seeds
    engine = Engine(model, stop_ids={tok.bos_id})
    for i, text in enumerate(texts(events)):
        ids = list(engine.generate([tok.bos_id, *tok.encode("The ")], 10, 0.9, 40, 1.0, seed=11 + i))
        assert text == tok.decode(ids)


def test_a_fixed_seed_reproduces_and_no_seed_varies(client):
    assert texts(generate(client, seed=5, max_tokens=20)) == texts(generate(client, seed=5, max_tokens=20))
    seeds = {generate(client, seed=None, max_tokens=2)[0]["seed"] for _ in range(4)}
    assert len(seeds) > 1


@pytest.mark.parametrize("body, message", [
    ({"max_tokens": 65}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"n": 9}, "n must"),
    ({"prompt": "x" * 8001}, "prompt"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"top_k": -2}, "top_k"), ({"seed": -1}, "seed"), ({"n": "many"}, "n"),
])
def test_bad_generation_settings_are_422(client, body, message):
    r = client.post("/api/runs/tiny/generate", json={"prompt": "The ", **body})
    assert r.status_code == 422 and message in r.json()["error"]


def test_generation_without_a_checkpoint_says_how_to_train(client):
    r = client.post("/api/runs/partial/generate", json={"prompt": "The "})
    assert r.status_code == 409 and "--until train" in r.json()["error"]


@pytest.mark.parametrize("max_tokens", [1, 16, 32, 64])
def test_few_shot_prompt_has_two_examples_from_the_runs_documents(client, runs_root, max_tokens):
    from lmforge.tokenizer.bpe import Tokenizer

    r = client.get(f"/api/runs/tiny/fewshot?max_tokens={max_tokens}")
    few = r.json()
    assert r.status_code == 200, few
    docs = pq.read_table(runs_root / "tiny" / "docs", columns=["text"]).column(0).to_pylist()
    *examples, query = few["prompt"].split("\n")
    assert len(examples) >= 2 and few["examples"] == len(examples)  # complete examples, then the open query
    for line in examples:  # a title and the opening words of that same document
        title, opening = line.split(": ", 1)
        doc = next(d for d in docs if d.strip().startswith(title + "\n"))
        assert opening and " ".join(doc.split("\n", 1)[1].split()).startswith(opening)
    title = query.removesuffix(":")
    assert query.endswith(":") and title not in [x.split(": ", 1)[0] for x in examples]
    assert any(d.strip().startswith(title + "\n") for d in docs)
    # it fits the context with BOS in front and leaves the continuation's room it reports
    assert few["tokens"] == len(Tokenizer.load(runs_root / "tiny" / "tokenizer").encode(few["prompt"]))
    assert 1 <= few["max_tokens"] <= max_tokens and 1 + few["tokens"] + few["max_tokens"] <= 64


def test_few_shot_prompt_errors(client):
    assert client.get("/api/runs/partial/fewshot").status_code == 409
    for bad in ("0", "65", "-1", "abc", "1e9", str(2**70)):
        r = client.get(f"/api/runs/tiny/fewshot?max_tokens={bad}")
        assert r.status_code == 422 and "max_tokens" in r.json()["error"], bad


def test_status_counts_generations(client):
    before = client.get("/api/status").json()["tokens_generated"]
    events = generate(client, max_tokens=5)
    after = client.get("/api/status").json()
    assert after["tokens_generated"] - before == sum(e["type"] == "token" for e in events)
    assert after["generations_running"] == 0 and after["generations_waiting"] == 0
