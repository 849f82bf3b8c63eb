"""One writer per run directory, and `lmforge status`: what a person sees before and after a rerun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmforge import pipeline
from lmforge.cli import main
from lmforge.config import config_from_dict
from lmforge.runlock import RunInUse, RunLock, holder
from lmforge.status import run_status

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from lmforge.runlock import RunLock; l = RunLock(sys.argv[1]); l.acquire(); " \
       "l.set_stage('train'); print('held', flush=True); time.sleep(60)"


def hold_lock(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_stops_at_once_naming_the_holder(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "r"\nruns_dir = "{tmp_path}"\n[collect]\nserve_demo = true\n')
    proc = hold_lock(tmp_path / "r")
    try:
        t0 = time.monotonic()
        code = main(["run", str(cfg)])
        err = capsys.readouterr().err
        assert code == 3 and time.monotonic() - t0 < 5
        assert f"{tmp_path / 'r'} is in use by PID {proc.pid}" in err and "Traceback" not in err
        assert not (tmp_path / "r" / "crawl").exists()
    finally:
        proc.kill()
        proc.wait()


def test_the_kernel_releases_the_lock_of_a_killed_process(tmp_path):
    proc = hold_lock(tmp_path)
    assert holder(tmp_path)["pid"] == proc.pid
    with pytest.raises(RunInUse):
        RunLock(tmp_path).acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        assert holder(tmp_path) is None or holder(tmp_path)["pid"] == os.getpid()


def test_two_runs_started_together_one_runs_one_refuses(tmp_path):
    data = tmp_path / "docs.jsonl"
    words = "the quick brown fox jumps over the lazy dog and then it runs far away into the green forest"
    data.write_text("".join(json.dumps({"text": f"{words} {i}. " * 30, "url": f"https://x/{i}"}) + "\n"
                            for i in range(400)))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "r"\nruns_dir = "{tmp_path}"\n[clean]\nsteps = ["extract"]\n[[clean.inputs]]\n'
                   f'path = "{data}"\n[tokenizer]\nvocab_size = 400\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lmforge", "run", str(cfg), "--until", "tokenize"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read() + p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the second one started after the first had finished: it must skip everything
        assert any(out.count("complete, skipped") == 3 for _, out in results), results
    else:
        assert codes == [0, 3], results
        refused = next(out for code, out in results if code == 3)
        assert "is in use by PID" in refused and "Traceback" not in refused
    assert main(["status", str(tmp_path / "r"), "--json"]) == 0


def make_cfg(tmp_path, **sections):
    return config_from_dict({"name": "s", "runs_dir": str(tmp_path), "collect": {"serve_demo": True}, **sections})


@pytest.fixture
def fake_stages(monkeypatch):
    from test_pipeline import FAKE_OUTPUTS, MANIFEST

    def fake(stage):
        def run_stage(cfg, rd):
            if stage in FAKE_OUTPUTS:
                FAKE_OUTPUTS[stage](rd).parent.mkdir(parents=True, exist_ok=True)
                FAKE_OUTPUTS[stage](rd).write_text(MANIFEST if stage == "tokenize" else "x")
            return {"fetched": 1}
        return run_stage

    monkeypatch.setattr(pipeline, "stage_function", fake)


def states(rows):
    return {r.stage: (r.state, r.reason) for r in rows}


def test_status_complete_stale_missing_running(tmp_path, fake_stages, capsys):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), until="train", log=lambda m: None)
    rows = states(run_status(rd.root))
    assert rows["train"] == ("complete", "") and rows["sample"][0] == "missing"
    # another config: what a rerun with it would redo, and why
    cfg2 = make_cfg(tmp_path, clean={"gopher_quality": {"min_words": 5}})
    rows = states(run_status(rd.root, cfg2))
    assert rows["crawl"] == ("complete", "")
    assert rows["clean"] == ("stale", "clean.gopher_quality.min_words 50 -> 5")
    assert rows["tokenizer"] == ("stale", "clean is stale")
    # a clean rerun alone: the later stages are stale because their input changed
    pipeline.run_pipeline(cfg2, only=["clean"], log=lambda m: None)
    rows = states(run_status(rd.root))
    assert rows["clean"] == ("complete", "") and rows["tokenizer"][0] == "missing"
    proc = hold_lock(rd.root)
    try:
        rows = run_status(rd.root)
        running = next(r for r in rows if r.state == "running")
        assert running.stage == "train" and running.pid == proc.pid
        assert main(["status", str(rd.root)]) == 0
        out = capsys.readouterr().out
        assert f"running (PID {proc.pid})" in out and re.search(r"^  clean +complete$", out, re.M)
    finally:
        proc.kill()
        proc.wait()


def test_status_of_a_config_file_and_of_nothing(tmp_path, fake_stages, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "s"\nruns_dir = "{tmp_path}"\n[collect]\nserve_demo = true\n')
    assert main(["status", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  crawl +missing$", out, re.M) and f"lmforge run {cfg}" in out
    assert main(["status", str(tmp_path / "nope")]) == 1
    assert "no such run directory or config file" in capsys.readouterr().err


def test_status_says_an_interrupted_stage_resumes(tmp_path, fake_stages):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), until="tokenize", log=lambda m: None)
    rd.write_started("train", pipeline.expected_record("train", make_cfg(tmp_path), rd))
    assert states(run_status(rd.root))["train"] == ("missing", "interrupted; rerun to resume")


def test_status_needs_no_lock_and_takes_none(tmp_path, fake_stages):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), until="clean", log=lambda m: None)
    with RunLock(rd.root):
        run_status(rd.root)  # reading while another process writes is allowed
    assert holder(rd.root) is None


@pytest.mark.parametrize("key", ["train.lr", "model.rope_theta", "sample.temperature", "clean.language.min_score", "clean.fineweb.max_short_line_ratio"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_rejected_by_the_config(tmp_path, key, value, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    assert main(["run", str(cfg), "--set", f"{key}={value}"]) == 2
    assert f"{key}: must be a finite number, got {float(value)!r}" in capsys.readouterr().err


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'name = "r"\nruns_dir = "{blocker}"\n[collect]\nserve_demo = true\n')
    assert main(["run", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the run directory" in err and "Traceback" not in err


def test_a_crawl_into_a_folder_in_use_stops_at_once(tmp_path, capsys):
    proc = hold_lock(tmp_path / "out")
    try:
        assert main(["crawl", "http://127.0.0.1:9/", "--out", str(tmp_path / "out"), "--quiet"]) == 3
        assert f"is in use by PID {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()


def test_status_of_a_changed_model_says_it_needs_force(tmp_path, fake_stages, capsys):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), log=lambda m: None)
    cfg = tmp_path / "c.toml"
    cfg.write_text(rd.config.read_text())
    assert main(["status", str(cfg), "--set", "model.n_layer=6"]) == 0
    out = capsys.readouterr().out
    assert "train      stale: model.n_layer 4 -> 6 (a new model: add --force train)" in out
    assert "sample     stale: train is stale" in out
    assert out.rstrip().endswith(f"lmforge run {cfg} --force train")
