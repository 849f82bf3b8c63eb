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
    assert cfg.clean.gopher_quality.min_words == 50 and (cfg.clean.minhash.bands, cfg.clean.minhash.rows) == (14, 8)
    assert cfg.clean.language.languages == ["en", "ko"] and cfg.clean.url.block_domains == ["spam.example"]


def test_keys_of_before_steps_still_load():
    cfg = config_from_dict({"clean": {"languages": ["ko"], "extract_fast": True, "pii": False,
                                      "quality": {"min_words": 20, "max_symbol_word_ratio": 0.2}}})
    c = cfg.clean
    assert c.language.languages == ["ko"] and c.extract.fast and "pii" not in c.steps
    assert c.gopher_quality.min_words == 20 and c.gopher_quality.max_hash_word_ratio == 0.2
    off = config_from_dict({"clean": {"quality": {"enabled": False}}}).clean
    assert off.steps == ["url", "extract", "language", "pii"]


def test_thresholds_take_false_and_numbers():
    c = config_from_dict({"clean": {"fineweb": {"max_short_line_ratio": False, "min_line_punct_ratio": 0},
                                    "gopher_quality": {"min_words": 10}}}).clean
    assert c.fineweb.max_short_line_ratio is False and c.fineweb.min_line_punct_ratio == 0.0
    assert c.gopher_quality.min_words == 10 and type(c.gopher_quality.min_words) is int
