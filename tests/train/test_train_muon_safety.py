"""Training with Muon (DDP, resume), and the guards: non-finite loss, memory, stale temporaries, dtype choice."""

from __future__ import annotations

import json
import os

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.train.checkpoint import latest_checkpoint
from lmforge.train.loop import Trainer, train

from lmf_train_data import free_port, make_token_run, tiny_config

MUON = dict(optimizer="muon", muon_lr=0.02, schedule="wsd", warmdown_fraction=0.5)


def losses(rd):
    return [r["loss"] for r in map(json.loads, rd.metrics.read_text().splitlines()) if r["kind"] == "train"]


def quiet(*_):
    pass


def _ddp_worker(rank, world, port, root):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from lmforge.rundir import RunDir

    torch.set_num_threads(1)
    train(tiny_config(root, max_steps=4, batch_size=2, **MUON), RunDir(root), log=quiet)


def test_ddp_with_muon_equals_one_process_with_gradient_accumulation(tmp_path):
    """2 gloo processes x batch 2 == 1 process x batch 2 x grad_accum 2: same data, same Muon updates."""
    import torch.multiprocessing as mp

    single = make_token_run(tmp_path / "single", {"a": 6000, "b": 3000})
    train(tiny_config(single.root, max_steps=4, batch_size=2, grad_accum=2, **MUON), single, log=quiet)
    ddp = make_token_run(tmp_path / "ddp", {"a": 6000, "b": 3000})
    mp.spawn(_ddp_worker, args=(2, free_port(), ddp.root), nprocs=2, join=True)
    a, b = losses(single), losses(ddp)
    assert len(a) == len(b) == 4 and a[-1] < a[0]
    assert max(abs(x - y) for x, y in zip(a, b)) < 2e-4, (a, b)
    from safetensors.torch import load_file

    wa = load_file(str(latest_checkpoint(single.checkpoints) / "model.safetensors"))
    wb = load_file(str(latest_checkpoint(ddp.checkpoints) / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 2e-3  # bf16 Newton-Schulz rounding at most


def test_resume_with_muon_state_gives_the_same_losses(tmp_path, monkeypatch):
    straight = make_token_run(tmp_path / "straight", {"a": 6000, "b": 3000})
    train(tiny_config(straight.root, max_steps=6, checkpoint_every=3, **MUON), straight, log=quiet)
    resumed = make_token_run(tmp_path / "resumed", {"a": 6000, "b": 3000})
    cfg = tiny_config(resumed.root, max_steps=6, checkpoint_every=3, **MUON)
    original = Trainer._train_step

    def crash_in_step_five(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", crash_in_step_five)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, resumed, log=quiet)
    optimizer_state = torch.load(latest_checkpoint(resumed.checkpoints) / "optimizer.pt", weights_only=True)
    assert set(optimizer_state) == {"muon", "adamw"} and optimizer_state["muon"]["state"]
    train(cfg, resumed, log=quiet)
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-6)


def test_non_finite_loss_stops_at_once_naming_the_step_and_last_checkpoint(token_run):
    with pytest.raises(LmforgeError, match=r"step (2|3): (loss|gradient norm) nan is not finite; .*"
                                           r"last good checkpoint is none"):
        train(tiny_config(token_run.root, max_steps=20, lr=1e30), token_run, log=quiet)
    assert not token_run.is_complete("train")
    train(tiny_config(token_run.root, max_steps=3, checkpoint_every=3), token_run, log=quiet)
    cfg = tiny_config(token_run.root, max_steps=20, lr=1e30)
    with pytest.raises(LmforgeError, match=r"step [45]:.*lower train.lr.*last good checkpoint is .*step_3"):
        train(cfg, token_run, log=quiet)
    assert latest_checkpoint(token_run.checkpoints).name == "step_3"  # nothing non-finite was saved


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_first_step(token_run, monkeypatch):
    started = []
    monkeypatch.setattr(Trainer, "_train_step", lambda self: started.append(1))
    with pytest.raises(LmforgeError, match=r"needs about [\d.]+ GiB.*free; use train.batch_size = \d+ "
                                           r"with train.grad_accum = \d+") as e:
        train(tiny_config(token_run.root, batch_size=10_000_000), token_run, log=quiet)
    assert not started and "10000000 sequences per step" in str(e.value)


def test_memory_estimate_grows_with_batch_and_vocab():
    from lmforge.model.config import ModelConfig
    from lmforge.train.resources import step_memory_bytes

    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, seq_len=64, vocab_size=300)
    small, big = (step_memory_bytes(cfg, 100_000, b, "adamw", False) for b in (16, 100_000))
    assert small < 50e6 and big > 20e9  # tiny at 16; the reported 21 GB at 100000 is predicted


def test_a_killed_runs_half_written_checkpoint_folder_is_removed(token_run):
    dead = token_run.checkpoints / ".step_2.999999.tmp"  # no such pid
    dead.mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"half")
    lines = []
    train(tiny_config(token_run.root, max_steps=2), token_run, log=lines.append)
    assert not dead.exists() and any("half-written" in line for line in lines)
    assert [p.name for p in token_run.checkpoints.iterdir() if p.name.startswith(".")] == []


def test_auto_dtype_on_cpu_is_logged_with_its_reason(token_run, monkeypatch, tmp_path):
    import lmforge.train.resources as res

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(res.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(res, "measure_matmul_flops", lambda dtype, **_: 400e9 if dtype == torch.bfloat16 else 50e9)
    for native, expect in ((True, "dtype auto -> bfloat16 autocast: native bf16"),
                           (False, "dtype auto -> float32: the CPU has no native bf16")):
        monkeypatch.setattr(res, "cpu_has_native_bf16", lambda native=native: native)
        lines = []
        trainer = Trainer(tiny_config(token_run.root, dtype="auto"), token_run, _env(), lines.append)
        assert any(expect in line for line in lines), lines
        assert trainer.amp_dtype == (torch.bfloat16 if native else None)
        assert trainer.peak == (400e9 if native else 50e9)  # MFU against the measured peak of that dtype
    cache = json.loads((tmp_path / "cache" / "lmforge" / "matmul_peak.json").read_text())
    assert list(cache.values()) == [{"float32": 50e9, "bfloat16": 400e9}]  # measured once, then cached


def test_a_peak_measured_on_a_busy_machine_is_not_cached_and_a_faster_step_raises_it(token_run, monkeypatch,
                                                                                        tmp_path):
    import lmforge.train.resources as res

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(res, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(res, "measure_matmul_flops", lambda dtype, **_: 1e6)  # far below any real step
    monkeypatch.setattr(res.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    Trainer(tiny_config(token_run.root, dtype="auto"), token_run, _env(), lambda line: None)
    assert not (tmp_path / "cache" / "lmforge" / "matmul_peak.json").exists()  # a busy machine's peak is not kept
    monkeypatch.setattr(res.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    lines = []
    trainer = Trainer(tiny_config(token_run.root, dtype="auto", max_steps=3), token_run, _env(), lines.append)
    trainer.run()
    mfus = [json.loads(line)["mfu"] for line in (token_run.root / "metrics.jsonl").read_text().splitlines()
            if '"train"' in line]
    assert mfus and max(mfus) <= 1.0 + 1e-6, mfus  # a fraction of the peak
    assert sum("peak raised to" in line for line in lines) == 1, lines
    cache = json.loads((tmp_path / "cache" / "lmforge" / "matmul_peak.json").read_text())
    assert list(cache.values())[0]["float32"] > 1e6


def test_the_best_measured_peak_is_kept(monkeypatch, tmp_path):
    """Every measurement is a lower bound of the peak: a low cached one is raised, a high one never lowered."""
    import lmforge.train.resources as res

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(res.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    bf16_calls = []
    measured = {torch.float32: 50e9}

    def fake(dtype, **_):
        if dtype == torch.bfloat16:
            bf16_calls.append(1)
            return 7e9
        return measured[torch.float32]

    monkeypatch.setattr(res, "measure_matmul_flops", fake)
    assert res.cpu_matmul_peaks(threads=2, bf16=False) == {"float32": 50e9, "cached": False}
    assert bf16_calls == []  # not measured unless asked (seconds without native bf16)
    measured[torch.float32] = 150e9  # a quieter machine
    assert res.cpu_matmul_peaks(threads=2, bf16=True) == {"float32": 150e9, "bfloat16": 7e9, "cached": True}
    measured[torch.float32] = 20e9  # a busy one
    assert res.cpu_matmul_peaks(threads=2, bf16=True) == {"float32": 150e9, "bfloat16": 7e9, "cached": True}
    assert bf16_calls == [1]  # measured once, then cached
    for damaged in ("[]", "{not json", '{"AMD|2 threads": "fast"}'):
        (tmp_path / "lmforge" / "matmul_peak.json").write_text(damaged)
        assert res.cpu_matmul_peaks(threads=2, bf16=False)["float32"] == 20e9  # measured again, no crash
        res.raise_cached_peak("float32", 30e9, threads=2)


def test_bf16_is_not_chosen_when_not_faster():
    from lmforge.train.resources import choose_cpu_dtype

    name, why = choose_cpu_dtype({"float32": 100e9, "bfloat16": 110e9}, native_bf16=True)
    assert name == "float32" and "not faster" in why and "1.1x" in why


def _env():
    from lmforge.train.dist import DistEnv

    return DistEnv(device="cpu")


@pytest.mark.parametrize("model,match", [({"n_embd": -64}, "n_embd: must be at least 1"),
                                         ({"n_embd": 60, "n_head": 4}, "n_embd: 60 must divide"),
                                         ({"n_kv_head": 3}, "n_kv_head"), ({"mlp": "gelu"}, "mlp"),
                                         ({"logit_softcap": -1.0}, "logit_softcap"),
                                         ({"mlp_ratio": 0.001}, "mlp_ratio: 0.001 leaves the MLP")])
def test_bad_model_settings_are_config_errors(tmp_path, model, match):
    from lmforge.config import config_from_dict
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": model})


def _fsdp_worker(rank, world, port, root, steps):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from lmforge.rundir import RunDir

    torch.set_num_threads(1)
    train(tiny_config(root, max_steps=steps, batch_size=2, checkpoint_every=2, eval_batches=3, parallel="fsdp",
                      **MUON), RunDir(root), log=quiet)


def test_fsdp_two_processes_match_one_process_and_resume(tmp_path):
    """FSDP2 (fully_shard) on gloo: sharded Muon + AdamW give one process's losses; its checkpoints resume."""
    import torch.multiprocessing as mp

    single = make_token_run(tmp_path / "single", {"a": 6000, "b": 3000})
    train(tiny_config(single.root, max_steps=4, batch_size=4, checkpoint_every=2, eval_batches=3, **MUON), single,
          log=quiet)
    sharded = make_token_run(tmp_path / "fsdp", {"a": 6000, "b": 3000})
    mp.spawn(_fsdp_worker, args=(2, free_port(), sharded.root, 2), nprocs=2, join=True)
    assert latest_checkpoint(sharded.checkpoints).name == "step_2"
    mp.spawn(_fsdp_worker, args=(2, free_port(), sharded.root, 4), nprocs=2, join=True)  # resumes at 2
    a, b = losses(single), losses(sharded)
    assert len(b) == 4 and max(abs(x - y) for x, y in zip(a, b)) < 2e-4, (a, b)
    from safetensors.torch import load_file

    wa = load_file(str(latest_checkpoint(single.checkpoints) / "model.safetensors"))
    wb = load_file(str(latest_checkpoint(sharded.checkpoints) / "model.safetensors"))
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 2e-3


def test_the_good_checkpoint_named_at_a_non_finite_stop_is_not_the_one_that_gave_it(token_run, monkeypatch):
    """Saved right after the update that blew the weights up, step 5 gives the NaN of step 6."""
    from lmforge.train import optim

    schedule = optim.lr_factor
    monkeypatch.setattr(optim, "lr_factor", lambda step, tc: 1e30 if step == 4 else schedule(step, tc))
    with pytest.raises(LmforgeError, match=r"step 6: .*not finite \(from the weights of .*step_5\).*last good "
                                           r"checkpoint is .*step_4;"):
        train(tiny_config(token_run.root, max_steps=8, checkpoint_every=1, keep_checkpoints=3), token_run, log=quiet)
