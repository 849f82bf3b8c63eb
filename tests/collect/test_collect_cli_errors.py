"""`lmforge crawl` with a seed that is not an http(s) URL, an unreadable seeds file or an
unwritable --out: one line naming it, no traceback, nothing crawled."""

from __future__ import annotations

import pytest

from lmforge.cli import main


def _cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return code, err


@pytest.mark.parametrize("seed", ["ftp://x", "not a url", "http://", "mailto:a@b.c"])
def test_a_seed_that_is_not_an_http_url_is_named(tmp_path, capsys, seed):
    code, err = _cli(["crawl", seed, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 1 and f"seed {seed!r} is not an http(s) URL" in err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_seeds_file_is_named(tmp_path, capsys):
    seeds = tmp_path / "seeds.txt"
    seeds.write_bytes(b"\xff\xfe\x00garbage\x80")
    code, err = _cli(["crawl", "--seeds-file", seeds, "--out", tmp_path / "out"], capsys)
    assert code == 1 and f"seeds_file {seeds}: cannot read it as UTF-8 text" in err


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_an_unwritable_out_is_named(tmp_path, capsys, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "crawl" if where == "under a file" else blocker
    code, err = _cli(["crawl", "http://127.0.0.1:9/", "--out", out, "--quiet"], capsys)
    assert code == 1 and f"--out {out}" in err and "folder" in err
