import pytest

from lmf_sample_run import build_run, run_config


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(RunDir, tokenizer) of a run with the real tokenizer, trained for 60 steps."""
    from lmforge.train.loop import train

    root = tmp_path_factory.mktemp("sample") / "run"
    rd, tok = build_run(root)
    train(run_config(root), rd, log=lambda *_: None)
    return rd, tok
