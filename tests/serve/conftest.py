"""A runs folder made once per test session: `tiny` by configs/tiny.toml (every stage), `tiny-b` a
copy of it with a smaller tokenizer (for comparisons), `partial` a run with only its config."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread, for as long as the ``with`` block."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server(runs_root):
    from lmforge.serve.app import create_app

    with ServerThread(create_app(runs_root)) as running:
        yield running
