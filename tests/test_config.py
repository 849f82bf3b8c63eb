"""Config loading: every shipped config loads; all problems of a bad one come out together."""

from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.config import load_config, to_toml
from lmforge.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem  # a run named after its config file: runs/<name>/ is easy to find


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"demo.toml", "tiny.toml"}


def test_all_problems_reported_together(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nmax_stepz = 5\nlr = "fast"\n[model]\nn_embd = 100\n[nosuch]\nx = 1\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    problems = err.value.problems
    assert any("train.max_stepz: unknown key (did you mean 'max_steps'?)" in p for p in problems)
    assert any("train.lr: expected float" in p for p in problems)
    assert any("model.n_embd" in p for p in problems)
    assert any("nosuch: unknown key" in p for p in problems)
    assert all(p.startswith(str(bad)) for p in problems)


def test_override_sets_typed_value(tmp_path):
    cfg = load_config(CONFIGS[0], ["train.max_steps=7", "sample.prompts=['a', 'b']", "name=other"])
    assert cfg.train.max_steps == 7 and cfg.sample.prompts == ["a", "b"] and cfg.name == "other"


def test_override_of_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="train.max_step: unknown key"):
        load_config(CONFIGS[0], ["train.max_step=7"])


def test_int_where_float_expected_is_accepted(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 1\n")
    assert load_config(path).train.lr == 1.0


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS[0])
    path = tmp_path / "resolved.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg


def test_cli_config_error_is_one_clear_message_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch_size = 'x'\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: expected int" in err and "Traceback" not in err


def test_cli_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_negative_seed_is_a_config_error():
    """numpy's generators (data order, splits) take no negative seed: it was a traceback at training."""
    with pytest.raises(ConfigError, match="seed: must be >= 0 \\(it is -1\\)"):
        load_config("configs/tiny.toml", ["seed=-1"])


@pytest.mark.parametrize("raw", ["2024", "nan", "true", "1e3"])
def test_an_override_of_a_text_setting_keeps_the_text_toml_would_read_as_another_type(raw):
    cfg = load_config(CONFIGS[0], [f"name={raw}", f"train.init_from={raw}"])
    assert cfg.name == raw and cfg.train.init_from == raw
    assert load_config(CONFIGS[0], ["train.max_steps=7"]).train.max_steps == 7
