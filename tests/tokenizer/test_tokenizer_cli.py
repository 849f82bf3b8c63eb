"""`lmforge tokenizer show/stats/train` and `lmforge tokenize` as a user runs them."""

from __future__ import annotations

import json

from lmforge.cli import main
from lmforge.tokenizer.bpe import Tokenizer


def test_show_plain_and_json(trained_run, tok, capsys):
    _, rd = trained_run
    text = "the fox 안녕\n"
    assert main(["tokenizer", "show", text, "--tokenizer", str(rd.tokenizer)]) == 0
    out = capsys.readouterr().out.splitlines()
    ids = tok.encode(text, allowed_special="all")
    assert out[-1] == f"Token count: {len(ids)}" and out[-2] == str(ids)
    assert out[0].startswith("[the]") and out[0].endswith("[\\n]") and "\x1b[" not in out[0]
    assert main(["tokenizer", "show", text + "<|endoftext|>", "--tokenizer", str(rd.tokenizer), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["count"] == len(view["tokens"]) == len(ids) + 1 and view["ids"][-1] == tok.bos_id
    assert b"".join(bytes(t["bytes"]) for t in view["tokens"]).decode() == text + "<|endoftext|>"


def test_show_colours_on_a_terminal(tok):
    from lmforge.tokenizer.show import render_tokens, show_tokens

    shown = render_tokens(show_tokens(tok, "hello world"), colour=True)
    assert shown.count("\x1b[48;5;") == len(tok.encode("hello world")) and "[hello" not in shown


def test_stats_reports_held_out_compression(trained_run, capsys):
    _, rd = trained_run
    assert main(["tokenizer", "stats", str(rd.root), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["split"] == "val" and st["documents"] >= 1
    assert st["bytes_per_token"] == round(st["bytes"] / st["tokens"], 4)
    assert sum(e["documents"] for e in st["languages"].values()) == st["documents"]
    assert 0 <= st["unused_merges"] <= st["merges"] and len(st["longest_tokens"]) == 10
    assert st["longest_tokens"][0]["bytes"] >= st["longest_tokens"][-1]["bytes"]
    assert main(["tokenizer", "stats", str(rd.root), "--split", "all"]) == 0
    assert "bytes/token" in capsys.readouterr().out


def test_standalone_train_and_missing_tokenizer(trained_run, tmp_path, capsys):
    _, rd = trained_run
    out = tmp_path / "tk"
    assert main(["tokenizer", "train", "--input", str(rd.docs / "*.parquet"), "--vocab-size", "300",
                 "--out", str(out)]) == 0
    assert Tokenizer.load(out).vocab_size == 300 and (out / "hf" / "tokenizer.json").is_file()
    assert main(["tokenizer", "show", "x", "--tokenizer", str(tmp_path / "nope")]) == 1
    assert "no tokenizer here" in capsys.readouterr().err


def test_config_wrappers_run_the_stages(tmp_path, capsys):
    from lmf_tokenizer_data import make_texts, write_docs

    runs = tmp_path / "runs"
    write_docs(runs / "w" / "docs" / "part-00000.parquet", make_texts(12))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "w"\nruns_dir = "{runs}"\n[tokenizer]\nvocab_size = 400\n')
    assert main(["tokenizer", "train", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["vocab_size"] == 400
    assert main(["tokenize", str(cfg), "--set", "tokenizer.shard_tokens=500"]) == 0
    stats = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert stats["documents"] == 12 and (runs / "w" / "tokens" / "manifest.json").is_file()


def test_config_problems_are_reported_together():
    import pytest

    from lmforge.config import config_from_dict
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_dict({"tokenizer": {"vocab_size": 100, "pattern": "([bad", "special_tokens": ["a", "a"]}})
    text = str(err.value)
    assert "tokenizer.vocab_size" in text and "tokenizer.pattern" in text and "tokenizer.special_tokens" in text
