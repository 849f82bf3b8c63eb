"""Fixtures: a run directory holding the tiny corpus and a tokenizer trained on it."""

from __future__ import annotations

import pytest

from lmf_tokenizer_data import ADVERSARIAL, make_run, make_texts


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(cfg, rd) of a run whose tokenizer stage has run on the tiny corpus (vocab 600)."""
    from lmforge.config import to_toml
    from lmforge.tokenizer import train

    cfg, rd = make_run(tmp_path_factory.mktemp("runs") / "tiny", make_texts() + ADVERSARIAL[1:])
    rd.config.write_text(to_toml(cfg))
    train.run_stage(cfg, rd)
    return cfg, rd


@pytest.fixture(scope="session")
def tok(trained_run):
    from lmforge.tokenizer.bpe import Tokenizer

    return Tokenizer.load(trained_run[1].tokenizer)
