"""A runs folder made once per test session: `tiny` by configs/tiny.toml (every stage), `tiny-b` a
copy of it with a smaller tokenizer (for comparisons), `partial` a run with only its config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lmf_serve_server import ServerThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'lmforge[serve]'")
    import pyarrow.parquet as pq

    from lmforge.config import load_config
    from lmforge.pipeline import run_pipeline
    from lmforge.tokenizer.train import train_tokenizer

    root = tmp_path_factory.mktemp("serve") / "runs"
    run_pipeline(load_config(ROOT / "configs" / "tiny.toml", [f"runs_dir='{root}'"]), log=lambda m: None)
    shutil.copytree(root / "tiny", root / "tiny-b")
    texts = pq.read_table(root / "tiny" / "docs", columns=["text"]).column(0).to_pylist()
    shutil.rmtree(root / "tiny-b" / "tokenizer")
    train_tokenizer(texts, vocab_size=280).save(root / "tiny-b" / "tokenizer")
    (root / "partial").mkdir()
    shutil.copy(root / "tiny" / "config.toml", root / "partial" / "config.toml")
    return root


@pytest.fixture(scope="session")
def server(runs_root):
    from lmforge.serve.app import create_app

    with ServerThread(create_app(runs_root)) as running:
        yield running
