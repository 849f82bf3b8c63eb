"""The stage runner's contract: stages in order, up-to-date ones skipped, a changed setting reruns
its stage and the later ones (and says why), --force reruns downstream, outputs checked."""

import json

import pytest

from lmforge import pipeline
from lmforge.config import config_from_dict
from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir

# What each fake stage writes: the least its real stage's output check accepts.
FAKE_OUTPUTS = {
    "clean": lambda rd: rd.docs / "part-00000.parquet",
    "tokenizer": lambda rd: rd.tokenizer / "tokenizer.json",
    "tokenize": lambda rd: rd.tokens / "manifest.json",
    "train": lambda rd: rd.checkpoints / "step_1" / "model.safetensors",
    "sample": lambda rd: rd.samples,
    "report": lambda rd: rd.report,
}


MANIFEST = json.dumps({"sources": {"web": {"train": [{"tokens": 10}], "val": []}}})


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def fake(stage):
        def run_stage(cfg, rd):
            seen.append(stage)
            if stage in FAKE_OUTPUTS:
                path = FAKE_OUTPUTS[stage](rd)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(MANIFEST if stage == "tokenize" else "x")
            return {"stage": stage, "fetched": 1} if stage == "crawl" else {"stage": stage}
        return run_stage

    monkeypatch.setattr(pipeline, "stage_function", fake)
    return seen


def make_cfg(tmp_path, **sections):
    return config_from_dict({"name": "t", "runs_dir": str(tmp_path), "collect": {"serve_demo": True}, **sections})


def quiet(_msg):
    pass


def test_runs_every_stage_in_order_then_skips(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    rd = pipeline.run_pipeline(cfg, log=quiet)
    assert calls == list(pipeline.STAGES)
    assert rd.read_stats("train")["stage"] == "train" and "seconds" in rd.read_stats("train")
    assert rd.config.exists()
    calls.clear()
    pipeline.run_pipeline(cfg, log=quiet)
    assert calls == []


def test_force_reruns_the_stage_and_everything_after(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    pipeline.run_pipeline(cfg, log=quiet)
    calls.clear()
    pipeline.run_pipeline(cfg, force=["train"], log=quiet)
    assert calls == ["train", "sample", "report"]


def test_only_and_until(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    pipeline.run_pipeline(cfg, until="tokenizer", log=quiet)
    assert calls == ["crawl", "clean", "tokenizer"]
    calls.clear()
    pipeline.run_pipeline(cfg, only=["clean"], force=["clean"], log=quiet)
    assert calls == ["clean"]


def test_failed_stage_is_not_marked_complete(tmp_path, monkeypatch):
    def boom(stage):
        def run_stage(cfg, rd):
            if stage == "clean":
                raise LmforgeError("no documents")
            return {"fetched": 1}
        return run_stage

    monkeypatch.setattr(pipeline, "stage_function", boom)
    cfg = make_cfg(tmp_path)
    with pytest.raises(LmforgeError):
        pipeline.run_pipeline(cfg, log=quiet)
    rd = RunDir(cfg.run_path)
    assert rd.is_complete("crawl") and not rd.is_complete("clean") and rd.read_stats("clean") is None


def test_a_stage_without_its_outputs_is_not_marked_complete(tmp_path, monkeypatch):
    """A stage that returns without writing what the next stage reads fails, and is not complete."""
    monkeypatch.setattr(pipeline, "stage_function", lambda stage: lambda cfg, rd: {"fetched": 1})
    cfg = make_cfg(tmp_path)
    with pytest.raises(LmforgeError, match="clean: no documents were written .* not marked complete"):
        pipeline.run_pipeline(cfg, log=quiet)
    assert not RunDir(cfg.run_path).is_complete("clean")


def test_a_crawl_that_fetched_nothing_is_not_complete(tmp_path, monkeypatch):
    stats = {"fetched": 0, "previously_fetched": 0, "errors": {"ConnectionRefused": 1}}
    monkeypatch.setattr(pipeline, "stage_function", lambda stage: lambda cfg, rd: dict(stats))
    with pytest.raises(LmforgeError, match=r"crawl: no page was fetched \(ConnectionRefused: 1\)"):
        pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    with pytest.raises(LmforgeError, match="crawl: no page was fetched"):  # a config with no seeds at all
        pipeline.run_pipeline(config_from_dict({"name": "e", "runs_dir": str(tmp_path)}), log=quiet)
    assert not RunDir(tmp_path / "t").is_complete("crawl") and not RunDir(tmp_path / "e").is_complete("crawl")


def test_a_non_finite_training_loss_is_not_complete(tmp_path, calls, monkeypatch):
    cfg = make_cfg(tmp_path)
    pipeline.run_pipeline(cfg, until="tokenize", log=quiet)
    monkeypatch.setattr(pipeline, "stage_function", lambda stage: lambda cfg, rd: {"final_loss": float("nan")})
    with pytest.raises(LmforgeError, match="train: the final loss is nan"):
        pipeline.run_pipeline(cfg, only=["train"], log=quiet)
    assert not RunDir(cfg.run_path).is_complete("train")


def test_unknown_stage_name(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(LmforgeError, match="unknown stage trian"):
        pipeline.run_pipeline(cfg, force=["trian"])


def test_forcing_one_stage_with_only_makes_later_stages_stale(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    rd = pipeline.run_pipeline(cfg, log=quiet)
    calls.clear()
    pipeline.run_pipeline(cfg, only=["tokenizer"], force=["tokenizer"], log=quiet)
    assert calls == ["tokenizer"]
    assert rd.is_complete("clean") and not rd.is_complete("tokenize") and not rd.is_complete("train")


def test_forced_training_starts_fresh_but_an_interrupted_one_resumes(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    rd = pipeline.run_pipeline(cfg, log=quiet)
    (rd.checkpoints / "step_5").mkdir(parents=True)
    rd.metrics.write_text("{}\n")
    rd.clear_marker("train")  # as after a crash: the checkpoints are kept to resume from
    pipeline.run_pipeline(cfg, log=quiet)
    assert (rd.checkpoints / "step_5").exists() and rd.metrics.exists()
    pipeline.run_pipeline(cfg, force=["tokenize"], log=quiet)
    assert not (rd.checkpoints / "step_5").exists() and not rd.metrics.exists()


# --- fingerprints: a changed setting reruns exactly its stage and the later ones ----------------

RESULT_SETTINGS = [
    ("crawl", {"collect": {"serve_demo": True, "max_pages": 7}}),
    ("clean", {"clean": {"gopher_quality": {"min_words": 5}}}),
    ("tokenizer", {"tokenizer": {"vocab_size": 600}}),
    ("tokenize", {"tokenizer": {"val_fraction": 0.2}}),
    ("train", {"train": {"lr": 0.005}}),
    ("sample", {"sample": {"max_new_tokens": 5}}),
]


@pytest.mark.parametrize("stage,change", RESULT_SETTINGS, ids=[s for s, _ in RESULT_SETTINGS])
def test_a_changed_result_setting_reruns_its_stage_and_only_the_later_ones(tmp_path, calls, stage, change):
    pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    calls.clear()
    lines = []
    pipeline.run_pipeline(make_cfg(tmp_path, **change), log=lines.append)
    names = list(pipeline.STAGES)
    assert calls == names[names.index(stage):]
    stale = [line for line in lines if "stale" in line]
    later = len(names) - names.index(stage) - 1
    plural = "s" if later != 1 else ""
    assert stale[0].startswith(f"[{stage}] stale: ") and stale[0].endswith(f"{stage} and {later} later stage{plural}")


@pytest.mark.parametrize("change", [{"clean": {"workers": 2}}, {"tokenizer": {"workers": 2}},
                                    {"train": {"threads": 1, "log_every": 5}},
                                    {"collect": {"serve_demo": True, "concurrency": 2}}])
def test_a_changed_speed_setting_reruns_nothing(tmp_path, calls, change):
    pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    calls.clear()
    pipeline.run_pipeline(make_cfg(tmp_path, **change), log=quiet)
    assert calls == []


def test_the_stale_line_says_what_changed(tmp_path, calls):
    pipeline.run_pipeline(make_cfg(tmp_path, clean={"gopher_quality": {"min_words": 50}}), log=quiet)
    lines = []
    pipeline.run_pipeline(make_cfg(tmp_path, clean={"gopher_quality": {"min_words": 5}}), log=lines.append)
    assert "[clean] stale: clean.gopher_quality.min_words 50 -> 5; rerunning clean and 5 later stages" in lines


def test_a_skipping_run_does_not_rewrite_the_run_config(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    before = rd.config.read_text()
    pipeline.run_pipeline(make_cfg(tmp_path, train={"threads": 1}), log=quiet)
    assert rd.config.read_text() == before


def test_each_record_keeps_the_config_its_stage_ran_with(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    pipeline.run_pipeline(make_cfg(tmp_path, sample={"max_new_tokens": 5}), log=quiet)
    assert "max_new_tokens = 64" not in rd.read_record("sample")["config"]
    assert "max_new_tokens = 64" in rd.read_record("train")["config"]


def test_more_training_steps_continue_the_training(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path, train={"max_steps": 40}), log=quiet)
    calls.clear()
    lines = []
    pipeline.run_pipeline(make_cfg(tmp_path, train={"max_steps": 60}), log=lines.append)
    assert calls == ["train", "sample", "report"]
    assert any("train.max_steps 40 -> 60; resuming train" in line for line in lines)
    assert (rd.checkpoints / "step_1").exists()  # kept to resume from


def test_a_changed_model_shape_is_refused_with_the_command_that_starts_afresh(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path, model={"n_layer": 2}), log=quiet)
    before = rd.config.read_text()
    calls.clear()
    with pytest.raises(LmforgeError, match=r"model.n_layer 2 -> 3 .*--force train"):
        pipeline.run_pipeline(make_cfg(tmp_path, model={"n_layer": 3}), log=quiet)
    assert calls == [] and rd.is_complete("train") and rd.config.read_text() == before
    pipeline.run_pipeline(make_cfg(tmp_path, model={"n_layer": 3}), force=["train"], log=quiet)
    assert calls == ["train", "sample", "report"]


def test_changed_input_files_rerun_clean(tmp_path, calls):
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "a"}\n')
    cfg = make_cfg(tmp_path, collect={}, clean={"inputs": [{"path": str(data)}]})
    pipeline.run_pipeline(cfg, log=quiet)
    assert "crawl" not in calls  # no seeds: the clean stage reads its inputs
    calls.clear()
    pipeline.run_pipeline(cfg, log=quiet)
    assert calls == []
    data.write_text('{"text": "a longer text"}\n')
    lines = []
    pipeline.run_pipeline(cfg, log=lines.append)
    assert calls[0] == "clean" and any("its input files changed" in line for line in lines)


def test_an_interrupted_stage_started_with_other_settings_starts_afresh(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path, train={"lr": 0.01}), until="tokenize", log=quiet)
    # a training started with lr 0.01 was killed: its start record and a checkpoint remain
    rd.write_started("train", pipeline.expected_record("train", make_cfg(tmp_path, train={"lr": 0.01}), rd))
    (rd.checkpoints / "step_3").mkdir(parents=True)
    lines = []
    pipeline.run_pipeline(make_cfg(tmp_path, train={"lr": 0.005}), only=["train"], log=lines.append)
    assert not (rd.checkpoints / "step_3").exists() and any("train.lr 0.01 -> 0.005; rerunning" in x for x in lines)


def test_a_killed_stage_leaves_no_temporary_files_after_the_next_run(tmp_path, calls):
    cfg = make_cfg(tmp_path)
    rd = RunDir(cfg.run_path)
    left = [rd.checkpoints / ".step_40.12345.tmp", rd.docs / ".part-00001.parquet.tmp",
            rd.root / ".config.toml.999.tmp"]
    for path in left:
        path.mkdir(parents=True) if "step" in path.name else (path.parent.mkdir(parents=True, exist_ok=True),
                                                              path.write_text("x"))
    pipeline.run_pipeline(cfg, until="crawl", log=quiet)
    assert not any(p.exists() for p in left)


def test_records_are_json_with_a_fingerprint(tmp_path, calls):
    rd = pipeline.run_pipeline(make_cfg(tmp_path), log=quiet)
    record = json.loads((rd.root / ".complete" / "train").read_text())
    assert len(record["fingerprint"]) == 16 and record["settings"]["train.lr"] == 3e-3
    assert record["upstream"] == rd.read_record("tokenize")["fingerprint"]
