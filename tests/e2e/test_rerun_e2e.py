"""A person who experiments: change a setting, rerun. Every output must come from the settings the
run says it used (the real stages on the tiny site, not fakes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.rundir import RunDir
from tiny_site import build_site, serve

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    build_site(site)
    with serve(site) as url:
        yield url


def run(runs: Path, url: str, capsys, *sets: str) -> tuple[int, str]:
    args = ["run", str(ROOT / "configs" / "tiny.toml"), "--set", f"runs_dir='{runs}'", "--set", "name='st'",
            "--set", "collect.serve_demo=false", "--set", f"collect.seeds=['{url}index.html']",
            "--set", "train.max_steps=20", "--set", "train.eval_every=10"]
    for item in sets:
        args += ["--set", item]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def model_json(rd: RunDir) -> dict:
    latest = (rd.checkpoints / "latest").read_text().strip()
    return json.loads((rd.checkpoints / latest / "model.json").read_text())["model"]


def test_changed_settings_rerun_what_they_change(tmp_path, site_url, capsys):
    rd = RunDir(tmp_path / "st")
    code, out = run(tmp_path, site_url, capsys)
    assert code == 0, out
    first_docs = rd.read_stats("clean")["docs"]

    # a model shape change on a finished training is refused, and the run's config is not rewritten
    before = rd.config.read_text()
    code, out = run(tmp_path, site_url, capsys, "model.n_layer=3")
    assert code == 1 and "model.n_layer 2 -> 3" in out and "--force train" in out
    assert rd.config.read_text() == before and model_json(rd)["n_layer"] == 2

    # ... and made with --force train, which the checkpoint and the run's config then both say
    assert main(["run", str(rd.config), "--set", "model.n_layer=3", "--force", "train"]) == 0
    capsys.readouterr()
    assert model_json(rd)["n_layer"] == 3 and "n_layer = 3" in rd.config.read_text()

    # a sample setting reruns sample and report only
    code, out = run(tmp_path, site_url, capsys, "model.n_layer=3", "sample.max_new_tokens=5")
    assert code == 0 and "[sample] stale: sample.max_new_tokens 20 -> 5; rerunning sample and 1 later stage" in out
    assert "[train] complete, skipped" in out
    samples = json.loads(rd.samples.read_text())
    assert samples["settings"]["max_new_tokens"] == 5

    # more steps continue the training; sample and report follow it
    code, out = run(tmp_path, site_url, capsys, "model.n_layer=3", "sample.max_new_tokens=5", "train.max_steps=30")
    assert code == 0 and "train.max_steps 20 -> 30; resuming train and 2 later stages" in out
    rows = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 31))
    assert model_json(rd)["n_layer"] == 3

    # a clean setting reruns clean and everything after it
    code, out = run(tmp_path, site_url, capsys, "model.n_layer=3", "sample.max_new_tokens=5", "train.max_steps=30",
                    "clean.gopher_quality.min_words=5")
    assert code == 0 and "[clean] stale: clean.gopher_quality.min_words 20 -> 5; rerunning clean and 5 later stages" in out
    assert "[crawl] complete, skipped" in out
    assert rd.read_stats("clean")["docs"] >= first_docs

    # a speed-only setting reruns nothing
    code, out = run(tmp_path, site_url, capsys, "model.n_layer=3", "sample.max_new_tokens=5", "train.max_steps=30",
                    "clean.gopher_quality.min_words=5", "clean.workers=2", "tokenizer.workers=2", "train.threads=1")
    assert code == 0 and out.count("complete, skipped") == 7

    assert main(["status", str(rd.root)]) == 0
    status = capsys.readouterr().out
    assert status.count("complete") == 7
