import pytest

from lmf_train_data import make_token_run


@pytest.fixture
def token_run(tmp_path):
    """A run dir with synthetic shards of two sources, a (6000 tokens) and b (3000)."""
    return make_token_run(tmp_path / "run", {"a": 6000, "b": 3000})
