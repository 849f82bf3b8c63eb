import pytest

from lmforge.config import config_from_dict
from lmforge.errors import ConfigError


def test_clean_config_problems_are_reported_together():
    bad = {"clean": {"languages": ["EN", "ko"], "minhash": {"bands": 0}, "min_alpha_words_ratio": 2.0,
                     "url_block_patterns": ["(unclosed"], "workers": -1}}
    with pytest.raises(ConfigError) as err:
        config_from_dict(bad)
    text = str(err.value)
    for key in ("languages: 'EN'", "minhash.bands", "min_alpha_words_ratio", "url_block_patterns[0]",
                "workers"):
        assert key in text, key


def test_bad_input_spec_names_the_key():
    with pytest.raises(ConfigError, match=r"clean.inputs\[0\].format: 'pdf' is not one of"):
        config_from_dict({"clean": {"inputs": [{"path": "x", "format": "pdf"}]}})


def test_default_clean_config_is_valid():
    cfg = config_from_dict({"clean": {"languages": ["en", "ko"], "url_block_domains": ["spam.example"]}})
    assert cfg.clean.quality.min_words == 50 and (cfg.clean.minhash.bands, cfg.clean.minhash.rows) == (14, 8)
