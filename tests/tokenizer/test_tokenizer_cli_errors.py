"""`lmforge tokenizer train` standalone on a file that is not Parquet, a text column of numbers,
a bad --max-bytes or an unwritable --out: one line, no traceback."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.cli import main


def _cli(args, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return code, err


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["one two three four " * 10] * 20}), path)
    return path


def test_random_bytes_named_parquet(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(range(256)) * 4)
    code, err = _cli(["tokenizer", "train", "--input", bad, "--out", tmp_path / "tok"], capsys)
    assert code == 1 and f"{bad}: not a readable Parquet file" in err


def test_a_text_column_of_numbers(tmp_path, capsys):
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), ints)
    code, err = _cli(["tokenizer", "train", "--input", ints, "--out", tmp_path / "tok"], capsys)
    assert code == 1 and "the `text` column holds int64, not strings" in err


def test_negative_max_bytes_is_an_argument_error(docs, tmp_path, capsys):
    code, err = _cli(["tokenizer", "train", "--input", docs, "--out", tmp_path / "tok", "--max-bytes", "-4"], capsys)
    assert code == 2 and "argument --max-bytes: -4 is negative" in err


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_an_unwritable_out(docs, tmp_path, capsys, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "tok" if where == "under a file" else blocker
    code, err = _cli(["tokenizer", "train", "--input", docs, "--out", out, "--vocab-size", "300"], capsys)
    assert code == 1 and "--out" in err and "folder" in err
    assert blocker.read_text() == "x"
