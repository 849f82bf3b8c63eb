"""The pipeline's contract: stages in order, completed ones skipped, --force reruns downstream."""

import pytest

from lmforge import pipeline
from lmforge.config import config_from_dict
from lmforge.errors import LmforgeError


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake(stage):
        def run_stage(cfg, rd):
            seen.append(stage)
            return {"stage": stage}
        return run_stage

    monkeypatch.setattr(pipeline, "stage_function", fake)
    return seen


def test_runs_every_stage_in_order_then_skips(tmp_path, calls):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    rd = pipeline.run_pipeline(cfg, log=lambda m: None)
    assert calls == list(pipeline.STAGES)
    assert rd.read_stats("train")["stage"] == "train" and "seconds" in rd.read_stats("train")
    assert rd.config.exists()
    calls.clear()
    pipeline.run_pipeline(cfg, log=lambda m: None)
    assert calls == []


def test_force_reruns_the_stage_and_everything_after(tmp_path, calls):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    pipeline.run_pipeline(cfg, log=lambda m: None)
    calls.clear()
    pipeline.run_pipeline(cfg, force=["train"], log=lambda m: None)
    assert calls == ["train", "sample", "report"]


def test_only_and_until(tmp_path, calls):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    pipeline.run_pipeline(cfg, until="tokenizer", log=lambda m: None)
    assert calls == ["crawl", "clean", "tokenizer"]
    calls.clear()
    pipeline.run_pipeline(cfg, only=["clean"], force=["clean"], log=lambda m: None)
    assert calls == ["clean"]


def test_failed_stage_is_not_marked_complete(tmp_path, monkeypatch):
    def boom(stage):
        def run_stage(cfg, rd):
            if stage == "clean":
                raise LmforgeError("no documents")
            return {}
        return run_stage

    monkeypatch.setattr(pipeline, "stage_function", boom)
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    with pytest.raises(LmforgeError):
        pipeline.run_pipeline(cfg, log=lambda m: None)
    rd = pipeline.RunDir(cfg.run_path)
    assert rd.is_complete("crawl") and not rd.is_complete("clean") and rd.read_stats("clean") is None


def test_unknown_stage_name(tmp_path):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    with pytest.raises(LmforgeError, match="unknown stage trian"):
        pipeline.run_pipeline(cfg, force=["trian"])


def test_forcing_one_stage_with_only_makes_later_stages_stale(tmp_path, calls):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    rd = pipeline.run_pipeline(cfg, log=lambda m: None)
    calls.clear()
    pipeline.run_pipeline(cfg, only=["tokenizer"], force=["tokenizer"], log=lambda m: None)
    assert calls == ["tokenizer"]
    assert rd.is_complete("clean") and not rd.is_complete("tokenize") and not rd.is_complete("train")


def test_forced_training_starts_fresh_but_an_interrupted_one_resumes(tmp_path, calls):
    cfg = config_from_dict({"name": "t", "runs_dir": str(tmp_path)})
    rd = pipeline.run_pipeline(cfg, log=lambda m: None)
    (rd.checkpoints / "step_5").mkdir(parents=True)
    rd.metrics.write_text("{}\n")
    rd.clear_marker("train")  # as after a crash: the checkpoints are kept to resume from
    pipeline.run_pipeline(cfg, log=lambda m: None)
    assert (rd.checkpoints / "step_5").exists() and rd.metrics.exists()
    pipeline.run_pipeline(cfg, force=["tokenize"], log=lambda m: None)
    assert not rd.checkpoints.exists() and not rd.metrics.exists()
