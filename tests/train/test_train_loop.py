"""The train stage end to end on synthetic shards: learning, logs, checkpoints, resume, errors, DDP."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.train.checkpoint import latest_checkpoint
from lmforge.train.loop import Trainer, train

from lmf_train_data import free_port, make_token_run, tiny_config


def metrics(rd, kind="train"):
    return [r for r in map(json.loads, rd.metrics.read_text().splitlines()) if r["kind"] == kind]


def test_training_learns_and_writes_metrics_and_a_checkpoint(token_run):
    lines = []
    stats = train(tiny_config(token_run.root, max_steps=40, eval_every=20), token_run, log=lines.append)
    train_lines = metrics(token_run)
    assert [r["step"] for r in train_lines] == list(range(1, 41))
    assert set(train_lines[0]) == {"kind", "step", "loss", "lr", "grad_norm", "ms", "tok_per_s", "mfu", "tokens"}
    assert train_lines[0]["loss"] > 3.5  # about ln(64) = 4.16 at init
    assert train_lines[-1]["loss"] < 2.5
    vals = metrics(token_run, "val")
    assert [v["step"] for v in vals] == [20, 40] and vals[1]["val_loss"] < vals[0]["val_loss"]
    assert stats["steps"] == 40 and stats["tokens"] == 40 * 4 * 32
    step_lines = [line for line in lines if line.startswith("step ")]
    assert len(step_lines) == 40 and all(k in step_lines[0] for k in ("loss", "lr", "grad", "tok/s", "mfu", "eta"))
    ckpt = latest_checkpoint(token_run.checkpoints)
    assert ckpt.name == "step_40"
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.json", "model.safetensors", "optimizer.pt", "trainer.json"]
    info = json.loads((ckpt / "model.json").read_text())
    assert info["step"] == 40 and info["model"]["vocab_size"] == 64  # taken from the manifest


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = make_token_run(tmp_path / "straight", {"a": 6000, "b": 3000})
    train(tiny_config(straight.root, max_steps=6, checkpoint_every=3), straight, log=lambda *_: None)

    resumed = make_token_run(tmp_path / "resumed", {"a": 6000, "b": 3000})
    cfg = tiny_config(resumed.root, max_steps=6, checkpoint_every=3)
    original = Trainer._train_step

    def crash_in_step_five(self):
        if self.step == 4:
            raise KeyboardInterrupt  # killed after the step-3 checkpoint and one more step
        return original(self)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", crash_in_step_five)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, resumed, log=lambda *_: None)
    assert latest_checkpoint(resumed.checkpoints).name == "step_3"
    assert [r["step"] for r in metrics(resumed)] == [1, 2, 3, 4]
    logs = []
    train(cfg, resumed, log=logs.append)
    assert any("resumed from" in line and "step 3" in line for line in logs)
    a, b = metrics(straight), metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, 7))  # step 4's line was replaced, not repeated
    for ra, rb in zip(a, b):
        assert abs(ra["loss"] - rb["loss"]) < 1e-6, (ra, rb)


def test_keeps_only_the_last_checkpoints(token_run):
    train(tiny_config(token_run.root, max_steps=8, checkpoint_every=2, keep_checkpoints=2), token_run,
          log=lambda *_: None)
    assert sorted(p.name for p in token_run.checkpoints.glob("step_*")) == ["step_6", "step_8"]
    assert (token_run.checkpoints / "latest").read_text().strip() == "step_8"


def test_checkpoint_of_another_shape_names_both_shapes(token_run):
    train(tiny_config(token_run.root, max_steps=2), token_run, log=lambda *_: None)
    cfg = tiny_config(token_run.root, max_steps=4)
    cfg.model.n_embd = 64
    with pytest.raises(LmforgeError, match=r"n_embd=32.*differs.*n_embd=64"):
        train(cfg, token_run, log=lambda *_: None)


def test_all_sources_capped_ends_training_with_a_message(token_run):
    lines = []
    # a: 6000 tokens = 187 windows of 32; b: 93. At 4 per step, one epoch of both is 70 steps.
    stats = train(tiny_config(token_run.root, max_steps=500, epochs={"a": 1.0, "b": 1.0}), token_run,
                  log=lines.append)
    assert stats["data_exhausted"] and stats["steps"] == 70
    assert stats["windows_per_source"] == {"a": 187, "b": 93}
    assert stats["sources"]["a"]["declared_epochs"] == 1.0 and stats["sources"]["a"]["tokens_seen"] == 187 * 32
    assert any("epoch cap" in line and "stopping at step 70" in line for line in lines)
    assert latest_checkpoint(token_run.checkpoints).name == "step_70"


def test_missing_tokens_is_a_clear_error(tmp_path):
    from lmforge.rundir import RunDir

    with pytest.raises(LmforgeError, match="tokenize"):
        train(tiny_config(tmp_path / "empty"), RunDir(tmp_path / "empty"), log=lambda *_: None)


def test_cli_train_writes_marker_and_stats(token_run, tmp_path, capsys):
    from lmforge.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f"""name = "run"\nruns_dir = "{token_run.root.parent}"\n[model]\nn_layer = 1\nn_head = 2
n_embd = 32\nseq_len = 32\n[train]\nmax_steps = 3\nbatch_size = 2\neval_batches = 1\ndevice = "cpu"\n""")
    assert main(["train", str(config), "--set", "train.max_steps=4"]) == 0
    assert token_run.is_complete("train")
    assert token_run.read_stats("train")["steps"] == 4
    assert "step 4/4" in capsys.readouterr().out


def _ddp_worker(rank, world, port, root):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from lmforge.rundir import RunDir

    torch.set_num_threads(1)
    # eval_batches doubles as the batch halves, so both runs validate on the same 8 windows
    train(tiny_config(root, max_steps=4, batch_size=2, eval_batches=4), RunDir(root), log=lambda *_: None)


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """gloo on CPU: the same code path as NCCL on GPUs."""
    import torch.multiprocessing as mp

    single = make_token_run(tmp_path / "single", {"a": 6000, "b": 3000})
    train(tiny_config(single.root, max_steps=4, batch_size=4, eval_batches=2), single, log=lambda *_: None)
    ddp = make_token_run(tmp_path / "ddp", {"a": 6000, "b": 3000})
    mp.spawn(_ddp_worker, args=(2, free_port(), ddp.root), nprocs=2, join=True)
    a, b = metrics(single), metrics(ddp)
    assert len(b) == 4  # rank 0 alone writes metrics
    for ra, rb in zip(a, b):
        assert abs(ra["loss"] - rb["loss"]) < 1e-4, (ra, rb)
    assert abs(metrics(single, "val")[-1]["val_loss"] - metrics(ddp, "val")[-1]["val_loss"]) < 1e-4
    assert latest_checkpoint(ddp.checkpoints).name == "step_4"


def test_resuming_on_rebuilt_tokens_is_refused(token_run):
    train(tiny_config(token_run.root, max_steps=2), token_run, log=lambda *_: None)
    make_token_run(token_run.root, {"a": 5000, "b": 3000})  # tokenize ran again on other data
    with pytest.raises(LmforgeError, match="other token shards.*delete"):
        train(tiny_config(token_run.root, max_steps=4), token_run, log=lambda *_: None)


def test_torchrun_cli_two_processes_write_once(token_run, tmp_path):
    """`torchrun --nproc_per_node=2 -m lmforge train CONFIG`: rank 0 alone logs, writes and marks."""
    import subprocess
    import sys

    config = tmp_path / "c.toml"
    config.write_text(f"""name = "run"\nruns_dir = "{token_run.root.parent}"\n[model]\nn_layer = 1\nn_head = 2
n_embd = 32\nseq_len = 32\n[train]\nmax_steps = 3\nbatch_size = 2\neval_batches = 1\ndevice = "cpu"\nthreads = 1\n""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "lmforge", "train", str(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("step 3/3") == 1
    assert token_run.read_stats("train")["world_size"] == 2
    assert [r["step"] for r in metrics(token_run)] == [1, 2, 3]


def test_tokens_made_by_another_tokenizer_are_refused(tmp_path):
    from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer

    rd = make_token_run(tmp_path / "run", {"web": 3000})
    save_tokenizer_dir(train_tokenizer(["some text to train on"] * 5, 260), rd.tokenizer, hf_export=False)
    manifest = json.loads((rd.tokens / "manifest.json").read_text())
    manifest["tokenizer_sha256"] = "0" * 64  # the tokens came from a tokenizer that was since retrained
    (rd.tokens / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LmforgeError, match="another tokenizer"):
        train(tiny_config(tmp_path / "run"), rd, log=lambda *_: None)


def test_resume_drops_a_metrics_line_a_kill_cut_in_half(tmp_path):
    rd = make_token_run(tmp_path / "run", {"a": 6000})
    train(tiny_config(rd.root, max_steps=2, checkpoint_every=2), rd, log=lambda *_: None)
    with open(rd.metrics, "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "st')  # killed in the middle of a write
    train(tiny_config(rd.root, max_steps=4, checkpoint_every=2), rd, log=lambda *_: None)
    rows = [json.loads(line) for line in rd.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]


def _truncate(path):
    path.write_bytes(path.read_bytes()[:300])


CHECKPOINT_DAMAGES = {
    "truncated weights": lambda step: _truncate(step / "model.safetensors"),
    "truncated optimizer": lambda step: _truncate(step / "optimizer.pt"),
    "trainer.json not JSON": lambda step: (step / "trainer.json").write_text("{"),
    "trainer.json gone": lambda step: (step / "trainer.json").unlink(),
    "model.json not JSON": lambda step: (step / "model.json").write_text("{"),
    "data position gone": lambda step: (step / "trainer.json").write_text(json.dumps(
        {**json.loads((step / "trainer.json").read_text()), "data": {}})),
}


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGES)
def test_a_damaged_checkpoint_stops_the_resume_with_the_fix_and_the_one_before_resumes(tmp_path, damage):
    rd = make_token_run(tmp_path / "run", {"a": 6000})
    train(tiny_config(rd.root, max_steps=4, checkpoint_every=2), rd, log=lambda *_: None)
    CHECKPOINT_DAMAGES[damage](rd.checkpoints / "step_4")
    with pytest.raises(LmforgeError, match=r"step_4: a damaged checkpoint, cannot resume from it \(.*delete that "
                                           r"folder to resume from the one before it"):
        train(tiny_config(rd.root, max_steps=6, checkpoint_every=2), rd, log=lambda *_: None)
    shutil.rmtree(rd.checkpoints / "step_4")
    train(tiny_config(rd.root, max_steps=6, checkpoint_every=2), rd, log=lambda *_: None)
    assert [r["step"] for r in metrics(rd)] == [1, 2, 3, 4, 5, 6]


def test_float16_resume_keeps_the_loss_scale(tmp_path, monkeypatch):
    """fp16's GradScaler halves its scale on each overflowing step: a resume that restarted it would
    skip those steps again and train otherwise than the uninterrupted run."""
    real_scaler, original = torch.amp.GradScaler, Trainer._train_step
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **kw: real_scaler(*a, **{**kw, "init_scale": 2.0**40}))

    crashes = [1]

    def crash_in_step_five(self):
        if self.step == 4 and self.rd.root.name == "resumed" and crashes:
            raise KeyboardInterrupt(crashes.pop())
        return original(self)

    monkeypatch.setattr(Trainer, "_train_step", crash_in_step_five)
    runs = {name: make_token_run(tmp_path / name, {"a": 6000}) for name in ("straight", "resumed")}
    cfg = {name: tiny_config(rd.root, max_steps=8, checkpoint_every=3, dtype="float16") for name, rd in runs.items()}
    train(cfg["straight"], runs["straight"], log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        train(cfg["resumed"], runs["resumed"], log=lambda *_: None)
    train(cfg["resumed"], runs["resumed"], log=lambda *_: None)
    scales = [json.loads((rd.checkpoints / "step_8" / "trainer.json").read_text())["scaler"]["scale"]
              for rd in runs.values()]
    assert scales[0] < 2.0**40 and scales[0] == scales[1]
    assert [r["loss"] for r in metrics(runs["straight"])] == [r["loss"] for r in metrics(runs["resumed"])]


@pytest.mark.parametrize("text", ['{"vocab', "[1]", '{"vocab_size": 64}'])
def test_a_damaged_token_manifest_is_one_line_with_the_fix(tmp_path, text):
    rd = make_token_run(tmp_path / "run", {"a": 6000})
    (rd.tokens / "manifest.json").write_text(text)
    with pytest.raises(LmforgeError, match="manifest.json: not a token manifest .*--force tokenize"):
        train(tiny_config(rd.root), rd, log=lambda *_: None)


def test_a_device_this_machine_lacks_is_one_line():
    from lmforge.train.dist import pick_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(LmforgeError, match="no CUDA GPU" if not count else f"only {count} CUDA GPU"):
        pick_device(f"cuda:{count}")
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        with pytest.raises(LmforgeError, match="no Apple GPU"):
            pick_device("mps")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_the_previous_one(token_run, monkeypatch):
    import errno

    real_save, saves = torch.save, []

    def disk_full_at_the_second(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_the_second)
    with pytest.raises(LmforgeError, match=r"step_4: cannot write the checkpoint \(No space left on device\).*"
                                           r"resumes from .*step_2"):
        train(tiny_config(token_run.root, max_steps=4, checkpoint_every=2), token_run, log=lambda *_: None)
    assert sorted(p.name for p in token_run.checkpoints.iterdir()) == ["latest", "step_2"]


def test_a_full_disk_for_the_metrics_is_one_line(token_run, monkeypatch):
    import builtins
    import errno

    from lmforge.train import loop

    def disk_full(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(loop, "open", disk_full, raising=False)
    with pytest.raises(LmforgeError, match=r"metrics.jsonl: cannot write \(No space left on device\).*resumes from"):
        train(tiny_config(token_run.root), token_run, log=lambda *_: None)
