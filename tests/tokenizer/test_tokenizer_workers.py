"""The tokenize stage's worker processes: many small tasks across files and read batches give the
same bytes as one process; an error in a worker stops the stage and leaves no shard behind."""

from __future__ import annotations

import json

import pytest

from lmf_tokenizer_data import make_texts, write_docs
from lmforge.tokenizer import tokenize


def _files(tmp_path):
    texts = make_texts(50, seed=3)
    return [write_docs(tmp_path / "docs" / "a.parquet", texts[:30], ["web" if i % 4 else "code" for i in range(30)]),
            write_docs(tmp_path / "docs" / "b.parquet", texts[30:], ids=[f"b-{i}" for i in range(20)])]


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_small_tasks_across_files_and_batches_match_one_process(trained_run, tmp_path, monkeypatch):
    _, rd = trained_run
    files = _files(tmp_path)
    one = tokenize.tokenize_docs(files, rd.tokenizer, tmp_path / "one", 7, 0.2, 1500, workers=1)
    # tasks of one or two documents, read 3 rows at a time: ranges cross read batches and files
    monkeypatch.setattr(tokenize, "TASK_BYTES", 700)
    monkeypatch.setattr(tokenize, "READ_ROWS", 3)
    assert len(list(tokenize._ranges(files))) >= 20
    three = tokenize.tokenize_docs(files, rd.tokenizer, tmp_path / "three", 7, 0.2, 1500, workers=3)
    assert three == one and one["documents"] == 50
    assert _tree(tmp_path / "three") == _tree(tmp_path / "one")
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert sum(len(v) for s in manifest["sources"].values() for v in s.values()) > 3  # several shards


def test_worker_error_stops_the_stage_and_leaves_no_shard(trained_run, tmp_path, monkeypatch):
    _, rd = trained_run
    files = _files(tmp_path)
    monkeypatch.setattr(tokenize, "TASK_BYTES", 700)
    encode = tokenize._encode_range

    def failing(f, start, end):
        if f == 1 and start > 5:
            raise ValueError("bad document")
        return encode(f, start, end)

    monkeypatch.setattr(tokenize, "_encode_range", failing)  # forked workers inherit it
    out = tmp_path / "tokens"
    with pytest.raises(ValueError, match="bad document"):
        tokenize.tokenize_docs(files, rd.tokenizer, out, 7, 0.2, 10**6, workers=2)
    assert not [p for p in out.rglob("*") if p.is_file()]  # no shard, temporary file or manifest
    assert not tokenize._WORKER
