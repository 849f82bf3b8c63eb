"""The tokenizer and tokenize stages on a run directory: what the trainer downstream relies on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from lmf_tokenizer_data import make_run, make_texts, write_docs
from lmforge.errors import LmforgeError
from lmforge.tokenizer import shards, tokenize, train
from lmforge.tokenizer.bpe import Tokenizer


def read_docs(rd, source: str, split: str, manifest: dict, bos: int) -> list[list[int]]:
    """Concatenate a source's shards and cut them at each BOS."""
    arr = np.concatenate([np.asarray(shards.read_shard(rd.tokens / s["path"]))
                          for s in manifest["sources"][source][split]] or [np.zeros(0, np.uint16)])
    starts = list(np.flatnonzero(arr == bos)) + [arr.size]
    assert arr.size == 0 or starts[0] == 0, "every document begins with BOS"
    return [arr[a + 1:b].tolist() for a, b in zip(starts, starts[1:])]


@pytest.fixture(scope="module")
def tokenized(trained_run):
    cfg, rd = trained_run
    cfg.tokenizer.shard_tokens = 2000
    stats = tokenize.run_stage(cfg, rd)
    return cfg, rd, stats, json.loads((rd.tokens / "manifest.json").read_text())


def test_shards_hold_every_document_exactly(tokenized, tok):
    cfg, rd, stats, manifest = tokenized
    import pyarrow.parquet as pq

    table = pq.read_table(rd.docs).to_pydict()
    assert manifest["version"] == 1 and manifest["vocab_size"] == tok.vocab_size
    assert manifest["bos_id"] == tok.bos_id and manifest["dtype"] == "uint16"
    assert manifest["tokenizer_sha256"] == tokenize.tokenizer_file_sha256(rd.tokenizer)
    for source in ("web", "code"):
        texts = sorted(t for t, s in zip(table["text"], table["source"]) if s == source)
        got = [tok.decode(ids) for split in ("train", "val") for ids in read_docs(rd, source, split, manifest, tok.bos_id)]
        assert sorted(got) == texts
        entry = stats["sources"][source]
        assert entry["train"]["documents"] + entry["val"]["documents"] == len(texts)
        assert entry["val"]["documents"] >= 1
        for split in ("train", "val"):
            listed = manifest["sources"][source][split]
            assert sum(s["tokens"] for s in listed) == entry[split]["tokens"]
            assert sum(s["documents"] for s in listed) == entry[split]["documents"]
            assert all(s["tokens"] <= 2000 and s["path"].startswith(f"{source}/{split}_") for s in listed)
    assert stats["documents"] == len(table["text"])
    assert stats["bytes"] == sum(len(t.encode()) for t in table["text"])
    assert 1.0 < stats["bytes_per_token"] < 8


def test_split_is_stable_and_workers_do_not_change_the_output(tokenized, tmp_path):
    cfg, rd, stats, manifest = tokenized
    out = tmp_path / "tokens"
    files = sorted(rd.docs.glob("*.parquet"))
    again = tokenize.tokenize_docs(files, rd.tokenizer, out, cfg.seed, cfg.tokenizer.val_fraction, 2000, workers=2)
    assert again == {k: v for k, v in stats.items() if k != "languages"}
    for source in manifest["sources"].values():
        for listed in source.values():
            for s in listed:
                assert (out / s["path"]).read_bytes() == (rd.tokens / s["path"]).read_bytes()


def test_bytes_per_token_per_language_is_measured_on_the_val_shards_documents(tokenized):
    _, _, stats, _ = tokenized
    val = [src["val"] for src in stats["sources"].values() if "val" in src]
    languages = stats["languages"].values()
    assert sum(e["documents"] for e in languages) == sum(v["documents"] for v in val) > 0
    assert sum(e["bytes"] for e in languages) == sum(v["bytes"] for v in val)
    assert sum(e["tokens"] for e in languages) == sum(v["tokens"] - v["documents"] for v in val)  # a BOS a document
    assert all(e["split"] == "val" and e["bytes_per_token"] == round(e["bytes"] / e["tokens"], 4) for e in languages)


def test_two_documents_still_give_a_val_document(tmp_path):
    cfg, rd = make_run(tmp_path / "two", ["first document here", "second document here"])
    cfg.tokenizer.val_fraction = 0.0001
    train.run_stage(cfg, rd)
    stats = tokenize.run_stage(cfg, rd)
    splits = [e for src in stats["sources"].values() for e in src.values()]
    assert sum(e["documents"] for e in splits) == 2
    assert any(src.get("val", {}).get("documents") == 1 for src in stats["sources"].values())


def test_empty_corpus_is_a_clear_error(tmp_path):
    cfg, rd = make_run(tmp_path / "empty", ["", ""])
    with pytest.raises(LmforgeError, match="corpus is empty"):
        train.run_stage(cfg, rd)
    assert not rd.tokenizer.exists()
    cfg, rd = make_run(tmp_path / "none", [])
    (rd.docs / "part-00000.parquet").unlink()
    with pytest.raises(LmforgeError, match="no documents"):
        train.run_stage(cfg, rd)


def test_byte_budget_samples_documents_deterministically(tmp_path):
    texts = make_texts(40)
    cfg, rd = make_run(tmp_path / "budget", texts, max_train_bytes=3000)
    files = sorted(rd.docs.glob("*.parquet"))
    first = list(train.sampled_texts(files, 3000, cfg.seed))
    assert first == list(train.sampled_texts(files, 3000, cfg.seed))
    assert first != list(train.sampled_texts(files, 3000, cfg.seed + 1))
    size = sum(len(t.encode()) for t in first)
    assert 3000 <= size < 3000 + max(len(t.encode()) for t in texts) and len(first) < len(texts)
    stats = train.run_stage(cfg, rd)
    assert stats["documents"] == len(first) and stats["bytes"] == size


def test_large_vocab_writes_uint32_shards(tmp_path):
    # 256 bytes + every 2-byte pair of ASCII letters + 3-byte tokens: 67k ids, over uint16's range.
    letters = [bytes([c]) for c in range(256)]
    ranks = {b: i for i, b in enumerate(letters)}
    for a in range(256):
        for b in range(256):
            ranks.setdefault(bytes([a, b]), len(ranks))
    for a in range(97, 123):
        for b in range(97, 123):
            for c in range(97, 100):
                ranks.setdefault(bytes([a, b, c]), len(ranks))
    tok = Tokenizer(ranks, r"[^\s]+|\s+", {"<|endoftext|>": len(ranks)})
    assert tok.vocab_size > 65536
    tok.save(tmp_path / "tk", hf_export=False)
    docs = write_docs(tmp_path / "docs" / "d.parquet", ["abc xyz", "aac hello"])
    stats = tokenize.tokenize_docs([docs], tmp_path / "tk", tmp_path / "tokens", 1, 0.0, 1000)
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert manifest["dtype"] == "uint32" and stats["documents"] == 2
    path = tmp_path / "tokens" / manifest["sources"]["web"]["train"][0]["path"]
    assert shards.read_header(path)[0] == 2
    assert tok.bos_id in shards.read_shard(path).tolist()


def test_shard_round_trip_and_corruption(tmp_path):
    tokens = np.array([5, 0, 65535, 17], dtype=np.int64)
    path = tmp_path / "s.bin"
    shards.write_shard(path, tokens, 65536)
    assert shards.read_header(path) == (1, 4)
    assert shards.read_shard(path).tolist() == tokens.tolist()
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[0] == 20240520 and header[2] == 4 and path.stat().st_size == 1024 + 8
    data = path.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-2])
    with pytest.raises(LmforgeError, match="corrupt token shard"):
        shards.read_shard(tmp_path / "short.bin")
    (tmp_path / "head.bin").write_bytes(data[:100])
    with pytest.raises(LmforgeError, match="truncated"):
        shards.read_header(tmp_path / "head.bin")
    (tmp_path / "magic.bin").write_bytes(b"\0" * 4 + data[4:])
    with pytest.raises(LmforgeError, match="not a token shard"):
        shards.read_header(tmp_path / "magic.bin")
    with pytest.raises(ValueError, match="out of range"):
        shards.write_shard(tmp_path / "bad.bin", [70000], 65536)


def test_streaming_shard_matches_write_shard(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 70000, size=n) for n in (0, 5, 1000, 3)]
    stream = shards.StreamingShard(tmp_path / "a.bin", 70000)
    for p in pieces:
        stream.write(p)
    assert not (tmp_path / "a.bin").exists()  # only the temporary file until close
    stream.close()
    shards.write_shard(tmp_path / "b.bin", np.concatenate(pieces), 70000)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert shards.read_header(tmp_path / "a.bin") == (2, 1008)
    aborted = shards.StreamingShard(tmp_path / "c.bin", 100)
    aborted.write(np.array([1, 2]))
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_missing_and_null_columns_get_defaults(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer

    path = tmp_path / "docs" / "d.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"text": ["one doc", None, "three docs"], "source": ["a", None, "a"]}), path)
    save_tokenizer_dir(train_tokenizer(["one doc three docs"], 270), tmp_path / "tk")
    stats = tokenize.tokenize_docs([path], tmp_path / "tk", tmp_path / "tokens", 1, 0.0, 100)
    assert stats["sources"]["a"]["train"]["documents"] + stats["sources"]["a"].get("val", {}).get("documents", 0) == 2
    assert stats["sources"]["default"]["train"]["documents"] == 1 and stats["documents"] == 3


def test_the_split_follows_the_url_so_a_recrawl_keeps_it(trained_run, tok, tmp_path):
    """A re-crawl gives every page a new record id and another order: each page stays on its side."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, rd = trained_run
    texts = make_texts(40, seed=5)
    urls = [f"https://example.com/page{i}" for i in range(40)]
    val_texts = []
    for name, order in (("first", range(40)), ("recrawl", reversed(range(40)))):
        order = list(order)
        path = tmp_path / name / "docs.parquet"
        path.parent.mkdir()
        pq.write_table(pa.table({"id": [f"{name}-{i}" for i in order], "url": [urls[i] for i in order],
                                 "source": ["web"] * 40, "text": [texts[i] for i in order]}), path)
        out = tmp_path / name / "tokens"
        tokenize.tokenize_docs([path], rd.tokenizer, out, 7, 0.25, 10**6, workers=2)
        manifest = json.loads((out / "manifest.json").read_text())
        val = [tok.decode(ids) for ids in read_docs(SimpleNamespace(tokens=out), "web", "val", manifest, tok.bos_id)]
        val_texts.append(sorted(val))
    assert val_texts[0] == val_texts[1] and 3 <= len(val_texts[0]) <= 20
    # without a url the id decides, as before
    assert tokenize.is_val(tokenize.doc_key("doc-1", ""), 7, 0.25, set()) == tokenize.is_val("doc-1", 7, 0.25, set())
