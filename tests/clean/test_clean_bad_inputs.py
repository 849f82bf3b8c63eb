"""Input files that cannot be read are counted with their reason; the others are cleaned; a clean
that keeps nothing fails with one line and is not marked complete."""

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clean_texts import BREAD, RIVER

from lmforge.cli import main
from lmforge.rundir import RunDir

NOISE = random.Random(0).randbytes(5000)
BAD = {"empty.warc.gz": b"", "empty.warc": b"", "empty.wet.gz": b"", "noise.warc.gz": NOISE, "noise.warc": NOISE,
       "noise.wet.gz": NOISE, "noise.parquet": NOISE, "noise.jsonl.gz": NOISE,
       "latin1.jsonl": '{"text": "caf\u00e9 au lait"}\n'.encode("latin-1")}


def write_bad(folder):
    folder.mkdir()
    for name, data in BAD.items():
        (folder / name).write_bytes(data)
    pq.write_table(pa.table({"text": [1, 2, 3]}), folder / "ints.parquet")
    return sorted(str(p) for p in folder.iterdir())


def clean(tmp_path, inputs, workers=1):
    args = ["clean", "--out", str(tmp_path / "out"), "--languages", "", "--workers", str(workers),
            "--set", "clean.quality.min_words=40"]
    for path in inputs:
        args += ["--input", path]
    return main(args)


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_files_are_counted_and_the_rest_is_cleaned(tmp_path, capsys, workers):
    bad = write_bad(tmp_path / "bad")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "r", "text": RIVER}) + "\n" + json.dumps({"id": "b", "text": BREAD}) + "\n")
    assert clean(tmp_path, [*bad, str(good)], workers) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    stats = json.loads((tmp_path / "out" / "stats" / "clean.json").read_text())
    assert sorted(stats["unreadable"]) == bad and stats["docs"] == 2
    assert "holds int64, not text" in stats["unreadable"][str(tmp_path / "bad" / "ints.parquet")]
    assert all(reason.startswith(path) for path, reason in stats["unreadable"].items())


def test_a_clean_with_nothing_readable_fails_in_one_line(tmp_path, capsys):
    bad = write_bad(tmp_path / "bad")
    assert clean(tmp_path, bad) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "no document kept" in err and f"{len(bad)} of {len(bad)} input files unreadable" in err
    assert not RunDir(tmp_path / "out").is_complete("clean")
