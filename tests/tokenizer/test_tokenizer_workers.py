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
    # tasks of one or two documents, read 3 rows at a time: tasks are slices of read batches
    monkeypatch.setattr(tokenize, "TASK_BYTES", 700)
    monkeypatch.setattr(tokenize, "READ_ROWS", 3)
    assert len(list(tokenize._tasks(files))) >= 20
    three = tokenize.tokenize_docs(files, rd.tokenizer, tmp_path / "three", 7, 0.2, 1500, workers=3)
    assert three == one and one["documents"] == 50
    assert _tree(tmp_path / "three") == _tree(tmp_path / "one")
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert sum(len(v) for s in manifest["sources"].values() for v in s.values()) > 3  # several shards


def test_worker_error_stops_the_stage_and_leaves_no_shard(trained_run, tmp_path, monkeypatch):
    _, rd = trained_run
    files = _files(tmp_path)
    monkeypatch.setattr(tokenize, "TASK_BYTES", 700)
    encode = tokenize._encode_batch

    def failing(batch):
        if "b-7" in batch.column("id").to_pylist():
            raise ValueError("bad document")
        return encode(batch)

    monkeypatch.setattr(tokenize, "_encode_batch", failing)  # forked workers inherit it
    out = tmp_path / "tokens"
    with pytest.raises(ValueError, match="bad document"):
        tokenize.tokenize_docs(files, rd.tokenizer, out, 7, 0.2, 10**6, workers=2)
    assert not [p for p in out.rglob("*") if p.is_file()]  # no shard, temporary file or manifest
    assert not tokenize._WORKER


def test_spawned_workers_give_the_same_bytes(trained_run, tmp_path, monkeypatch):
    """Where there is no fork (macOS' default, Windows) the workers are spawned and load the tokenizer."""
    import multiprocessing

    _, rd = trained_run
    files = _files(tmp_path)
    one = tokenize.tokenize_docs(files, rd.tokenizer, tmp_path / "one", 7, 0.2, 1500, workers=1)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    two = tokenize.tokenize_docs(files, rd.tokenizer, tmp_path / "two", 7, 0.2, 1500, workers=2)
    assert two == one
    assert _tree(tmp_path / "two") == _tree(tmp_path / "one")


def test_a_bad_tokenizer_is_named_and_the_workers_stop(tmp_path):
    import multiprocessing

    from lmforge.errors import LmforgeError

    (tmp_path / "tk").mkdir()
    (tmp_path / "tk" / "tokenizer.json").write_text('{"format": "lmforge-bpe", "version": 99}')
    files = _files(tmp_path)
    with pytest.raises(LmforgeError, match="version 99"):
        tokenize.tokenize_docs(files, tmp_path / "tk", tmp_path / "tokens", 7, 0.2, 1500, workers=3)
    assert not multiprocessing.active_children()


def test_tasks_are_cut_by_text_size_and_finer_at_the_end(monkeypatch):
    import pyarrow as pa

    monkeypatch.setattr(tokenize, "TASK_BYTES", 400)
    batch = pa.record_batch([pa.array([str(i) for i in range(20)]), pa.array([""] * 20), pa.array(["web"] * 20),
                             pa.array(["x" * 100] * 20)], names=tokenize.COLUMNS)
    assert [t.num_rows for t in tokenize._cut(batch)] == [4] * 5
    # the last 800 bytes in tasks of a quarter the size: the processes end close together
    assert [t.num_rows for t in tokenize._cut(batch, fine_tail=800)] == [4, 4, 4] + [1] * 8
    assert [t.column(0)[0].as_py() for t in tokenize._cut(batch, fine_tail=800)][3:5] == ["12", "13"]
