"""Bad input gets one clear line, a non-zero exit, and nothing half-written marked complete."""

from __future__ import annotations

from pathlib import Path

from lmforge.cli import main
from lmforge.rundir import RunDir


def write_config(tmp_path: Path, inputs: str) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "bad"\nruns_dir = "{tmp_path / "runs"}"\n[[clean.inputs]]\npath = "{inputs}"\n')
    return cfg


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_input_path(tmp_path, capsys):
    code, err = run_cli(["run", str(write_config(tmp_path, tmp_path / "nope.jsonl")), "--until", "clean"], capsys)
    assert code != 0 and "nope.jsonl" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    rd = RunDir(tmp_path / "runs" / "bad")
    assert not rd.is_complete("clean")


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = run_cli(["run", str(write_config(tmp_path, empty))], capsys)
    assert code != 0 and "Traceback" not in err
    assert "empty" in err.lower() or "no documents" in err.lower()
    rd = RunDir(tmp_path / "runs" / "bad")
    assert not rd.is_complete("tokenizer") and not rd.is_complete("train")
    assert not list(rd.tokenizer.glob("*")) if rd.tokenizer.exists() else True


def test_wrong_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tokenizer]\nvocab = 300\n")
    code, err = run_cli(["run", str(cfg)], capsys)
    assert code == 2 and "tokenizer.vocab: unknown key (did you mean 'vocab_size'?)" in err
