"""The train stage: next-token prediction over the token shards, one log line per step.

    python -m lmforge train configs/demo.toml                      # one process (CPU, GPU or MPS)
    torchrun --nproc_per_node=8 -m lmforge train configs/gpu.toml  # DDP, one process per GPU

If checkpoints exist, training resumes from the newest one (model, optimizer, data position and
RNG), so an interrupted run continues with the same losses it would have had.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import replace

from lmforge.config import RunConfig
from lmforge.errors import LmforgeError
from lmforge.rundir import RunDir, write_text_atomic


def run_stage(cfg: RunConfig, rd: RunDir) -> dict:
    return train(cfg, rd)


def train(cfg: RunConfig, rd: RunDir, log=print) -> dict:
    """Train ``cfg.model`` per ``cfg.train`` on ``rd.tokens``; return the stage stats."""
    import torch

    from lmforge.train.dist import close_distributed, init_distributed

    env = init_distributed(cfg.train.device)
    say = log if env.is_main else (lambda *_: None)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        trainer = Trainer(cfg, rd, env, say)
        stats = trainer.run()
        if env.world_size > 1:  # no rank tears the group down while another still talks to it
            import torch.distributed as dist

            dist.barrier()
        return stats
    finally:
        close_distributed(env)


def resolve_model_config(cfg: RunConfig, manifest: dict):
    """The model config with vocab_size taken from the tokens when it is 0."""
    vocab = int(manifest["vocab_size"])
    if cfg.model.vocab_size == 0:
        return replace(cfg.model, vocab_size=vocab)
    if cfg.model.vocab_size < vocab:
        raise LmforgeError(f"model.vocab_size = {cfg.model.vocab_size} is smaller than the tokenizer's {vocab}; "
                           "set it to 0 (take it from the tokenizer) or at least the tokenizer's size")
    return cfg.model


def _check_tokens_match_tokenizer(manifest: dict, rd: RunDir) -> None:
    """Token ids only mean something with the tokenizer that made them (sampling decodes with it)."""
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256

    made_by = manifest.get("tokenizer_sha256")
    if made_by and rd.tokenizer.is_dir() and made_by != tokenizer_file_sha256(rd.tokenizer):
        raise LmforgeError(f"{rd.tokens} was made by another tokenizer than {rd.tokenizer}; "
                           "rerun the tokenize stage: `lmforge run CONFIG --force tokenize`")


class Trainer:
    """State of one training run; ``run()`` does the steps."""

    def __init__(self, cfg: RunConfig, rd: RunDir, env, log):
        import torch

        from lmforge.model.gpt import GPT
        from lmforge.train.data import TrainLoader, load_manifest, val_batches
        from lmforge.train.optim import build_optimizer

        self.cfg, self.rd, self.env, self.log, self.tc = cfg, rd, env, log, cfg.train
        manifest = load_manifest(rd.tokens)
        _check_tokens_match_tokenizer(manifest, rd)
        self.tokens_id = _fingerprint(rd.tokens / "manifest.json")
        self.bos_id = manifest.get("bos_id", -1)  # targets equal to it carry no bytes (bits per byte)
        self.model_cfg = resolve_model_config(cfg, manifest)
        initial = self._initial_model(manifest)
        if initial is not None:
            self.model_cfg = initial.config
        self.amp_dtype, self.peak = self._choose_dtype_and_peak()
        self._check_memory()
        torch.manual_seed(cfg.seed)
        self.model = (initial if initial is not None else GPT(self.model_cfg)).to(env.device)
        self.fsdp = env.world_size > 1 and self.tc.parallel == "fsdp"
        if self.fsdp:
            from lmforge.train.fsdp import shard_model

            shard_model(self.model)  # before the optimizer, which must hold the sharded parameters
        # Newton-Schulz in bf16 where the step's matmuls are bf16 (fast there), float32 otherwise.
        ns_dtype = torch.bfloat16 if self.amp_dtype == torch.bfloat16 else None
        self.optimizer = build_optimizer(self.model, self.tc, env.device_type, ns_dtype)
        seq_len, batch = self.model_cfg.seq_len, self.tc.batch_size
        self.loader = TrainLoader(rd.tokens, manifest, seq_len, batch, cfg.seed, self.tc.mixture, self.tc.epochs,
                                  env.rank, env.world_size, log)
        self.val = val_batches(rd.tokens, manifest, seq_len, batch, self.tc.eval_batches)
        self.val_bytes = self._val_bytes()
        self.step, self.tokens_seen, self._saved_step = 0, 0, -1
        self.scaler = torch.amp.GradScaler(env.device_type, enabled=self.amp_dtype == torch.float16)
        self._resume()
        self.forward_model = self._wrap(self.model)
        self.tokens_per_step = batch * seq_len * self.tc.grad_accum * env.world_size
        self.flops_per_step = self.model.flops_per_token() * self.tokens_per_step

    # ------------------------------------------------------------------ setup

    def _initial_model(self, manifest: dict):
        """The model of ``train.init_from`` on a fresh start (None without it, or when resuming)."""
        from lmforge.model.config import ModelConfig
        from lmforge.train.checkpoint import latest_checkpoint, read_model_json

        if not self.tc.init_from:
            return None
        latest = latest_checkpoint(self.rd.checkpoints)
        if latest is not None:  # resuming: the shape is the one this run started with
            self.model_cfg = ModelConfig(**read_model_json(latest)["model"])
            return None
        from lmforge.train.init import load_initial_model

        model = load_initial_model(self.tc.init_from, self.rd, manifest, self.cfg.model.seq_len)
        shape = {k: v for k, v in vars(model.config).items() if k != "seq_len"}
        self.log(f"[train] starting from {self.tc.init_from}: model shape from it ({shape}), [model] ignored "
                 "except seq_len")
        return model

    def _choose_dtype_and_peak(self):
        """The autocast dtype (None = float32) and the peak FLOP/s of all processes, logged with why."""
        import torch

        from lmforge.train.dist import broadcast_object, peak_flops

        amp, why = _amp_dtype(self.tc.dtype, self.env.device)
        peaks = None
        if self.env.device == "cpu" and (self.tc.dtype == "auto" or not self.tc.peak_flops):
            from lmforge.train.resources import cpu_has_native_bf16, cpu_matmul_peaks, choose_cpu_dtype

            native_bf16 = cpu_has_native_bf16()
            peaks = cpu_matmul_peaks(bf16=native_bf16 or self.tc.dtype == "bfloat16")
            if self.tc.dtype == "auto":
                # Every rank must train in the same dtype: rank 0's measurement decides.
                name, why = broadcast_object(choose_cpu_dtype(peaks, native_bf16), self.env)
                amp = torch.bfloat16 if name == "bfloat16" else None
        name = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[amp]
        self.log(f"[train] dtype {self.tc.dtype} -> {name}" + (" autocast" if amp else "") + f": {why}")
        if self.tc.peak_flops or peaks is None:
            peak = peak_flops(self.tc.peak_flops, self.env.device)
        else:
            peak = peaks["bfloat16" if amp == torch.bfloat16 else "float32"]
            self.measured_peak_dtype = "bfloat16" if amp == torch.bfloat16 else "float32"
            self.log(f"[train] MFU against this machine's measured {name} matmul peak, "
                     f"{peak / 1e9:,.0f} GFLOP/s per process (the best measured on this machine)")
        return amp, peak * self.env.world_size

    def _check_memory(self) -> None:
        """Refuse, before the first step, a batch whose estimated memory cannot fit (with a fix)."""
        import torch

        from lmforge.model.gpt import GPT
        from lmforge.train.resources import check_step_fits

        with torch.device("meta"):
            n_params = GPT(self.model_cfg).num_params()
        check_step_fits(self.model_cfg, n_params, self.tc, self.env.device, self.amp_dtype is not None,
                        self.env.world_size)

    def _resume(self) -> None:
        from lmforge.train.checkpoint import (check_shape, latest_checkpoint, load_trainer_state, load_weights,
                                              remove_stale_temporaries)

        if self.env.is_main:
            for stale in remove_stale_temporaries(self.rd.checkpoints):
                self.log(f"[train] removed {stale}, a checkpoint a stopped run left half-written")
        path = latest_checkpoint(self.rd.checkpoints)
        if path is None:
            self._truncate_metrics()  # a fresh start: lines of an earlier, deleted run would mislead
            return
        try:
            saved = json.loads((path / "model.json").read_text(encoding="utf-8"))
            check_shape(path, saved["model"], self.model_cfg)
            if self.fsdp:
                from lmforge.train.fsdp import ShardedOptimizerState, load_full_weights

                load_full_weights(self.model, path)
                state = load_trainer_state(path, ShardedOptimizerState(self.model, self.optimizer))
            else:
                load_weights(path, self.model)
                state = load_trainer_state(path, self.optimizer)
            if state.get("tokens_id", self.tokens_id) != self.tokens_id:
                raise LmforgeError(f"{path}: this checkpoint was trained on other token shards (tokens/ was "
                                   f"rebuilt since); to train afresh on the new tokens delete {self.rd.checkpoints}")
            self.step, self.tokens_seen = int(state["step"]), int(state.get("tokens", 0))
            self.loader.load_state(state["data"])
            if self.scaler.is_enabled() and "scaler" in state:  # fp16's loss scale, as it had become
                self.scaler.load_state_dict(state["scaler"])
        except LmforgeError:
            raise
        except Exception as e:  # noqa: BLE001 - json, safetensors, torch.load and the loader raise their own types
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise LmforgeError(f"{path}: a damaged checkpoint, cannot resume from it ({type(e).__name__}: {first}); "
                               "delete that folder to resume from the one before it, or rerun with --force train "
                               "to start afresh") from None
        self._truncate_metrics()
        self.log(f"[train] resumed from {path} (step {self.step})")

    def _truncate_metrics(self) -> None:
        """Drop metric lines past the resumed step: those steps are about to be trained again."""
        if not self.env.is_main or not self.rd.metrics.exists():
            return
        lines = self.rd.metrics.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [line for line in lines if _metric_step(line) <= self.step]
        write_text_atomic(self.rd.metrics, "".join(line + "\n" for line in kept))

    def _wrap(self, model):
        import torch

        if self.tc.compile:
            model = torch.compile(model)
        if self.env.world_size > 1 and not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.env.local_rank] if self.env.device_type == "cuda" else None
            model = DDP(model, device_ids=ids)
        return model

    def _val_bytes(self) -> int | None:
        """UTF-8 bytes of the validation targets (special tokens count none), for bits per byte."""
        if not self.val:
            return None
        try:
            from lmforge.tokenizer.bpe import Tokenizer

            tok = Tokenizer.load(self.rd.tokenizer)
        except LmforgeError:  # no tokenizer (tests, copied tokens): bits per byte is simply not reported
            return None
        ids = [int(t) for _, y in self.val for row in y for t in row if t != self.bos_id]
        return len(tok.decode_bytes(ids) if hasattr(tok, "decode_bytes") else tok.decode(ids).encode("utf-8"))

    # ------------------------------------------------------------------ loop

    def run(self) -> dict:
        t_start, last_val, losses = time.time(), None, []
        start_step, exhausted = self.step, False
        self.log(f"[train] {self.model.num_params():,} parameters, {self.tokens_per_step:,} tokens/step, "
                 f"{self.env.world_size} process(es) on {self.env.device}, steps {self.step} -> {self.tc.max_steps}")
        while self.step < self.tc.max_steps:
            t0 = time.time()
            result = self._train_step()
            if result is None:
                exhausted = True
                self.log(f"[train] every source reached its epoch cap ({self.loader.epochs_done()}); "
                         f"stopping at step {self.step}")
                break
            loss, grad_norm, lr = result
            self.step += 1
            self.tokens_seen += self.tokens_per_step
            losses.append(loss)
            self._log_step(loss, grad_norm, lr, time.time() - t0, t_start, start_step)
            if self.tc.eval_every and self.step % self.tc.eval_every == 0 and self.step < self.tc.max_steps:
                last_val = self._evaluate()
            if self.tc.checkpoint_every and self.step % self.tc.checkpoint_every == 0:
                self._save()
        if self.step > start_step or last_val is None:
            last_val = self._evaluate()
        if self.step > start_step and self._saved_step != self.step:
            self._save()
        return self._stats(losses, last_val, time.time() - t_start, exhausted)

    def _train_step(self):
        """One optimizer update over grad_accum micro-batches; (loss, grad_norm, lr) or None at the end of data."""
        import torch

        from lmforge.train.dist import all_reduce_mean
        from lmforge.train.optim import lr_factor, set_lr

        factor = lr_factor(self.step, self.tc)
        set_lr(self.optimizer, factor)
        total = torch.zeros((), device=self.env.device)
        for micro in range(self.tc.grad_accum):
            batch = self.loader.next_batch()
            if batch is None:
                self.optimizer.zero_grad(set_to_none=True)
                return None
            x, y = (torch.from_numpy(a).to(self.env.device, non_blocking=True) for a in batch)
            last = micro == self.tc.grad_accum - 1
            # DDP and FSDP: reduce gradients only on the last micro-batch.
            sync = contextlib.nullcontext()
            if self.fsdp:
                self.model.set_requires_gradient_sync(last)
            elif not last and self.env.world_size > 1:
                sync = self.forward_model.no_sync()
            with sync, self._autocast():
                _, loss = self.forward_model(x, y, return_logits=False)
                loss = loss / self.tc.grad_accum
            self.scaler.scale(loss).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip or math.inf)
        grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        loss = all_reduce_mean(total, self.env).item()
        # Stop before a non-finite loss or gradient reaches the weights (fp16's scaler skips such steps itself).
        if not math.isfinite(loss) or not (math.isfinite(grad_norm) or self.scaler.is_enabled()):
            self._stop_non_finite(loss, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm, self.tc.lr * factor

    def _stop_non_finite(self, loss: float, grad_norm: float) -> None:
        from lmforge.train.checkpoint import checkpoint_before

        # The weights saved at this step are the ones that just gave the non-finite value: not good.
        last = checkpoint_before(self.rd.checkpoints, self.step)
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        if self._saved_step == self.step:
            what += f" is not finite (from the weights of {self.rd.checkpoints / f'step_{self.step}'})"
        else:
            what += " is not finite"
        # A rerun with another lr is a new training (its fingerprint changed): it removes the
        # checkpoints, so continuing from the good one means taking it out of the run first.
        keep = (f"; to continue from it rather than from scratch, copy it out of {self.rd.checkpoints} and set "
                "train.init_from to the copy (a rerun with other settings removes this run's checkpoints)"
                if last else "")
        raise LmforgeError(f"training stopped at step {self.step + 1}: {what}; lower train.lr (now "
                           f"{self.tc.lr:g}" + (f", muon_lr {self.tc.muon_lr:g}" if self.tc.optimizer == "muon" else "")
                           + ")" + ("" if self.tc.grad_clip else " or set train.grad_clip (now 0 = off)")
                           + f" and rerun. The last good checkpoint is {last or 'none (nothing saved yet)'}" + keep)

    def _autocast(self):
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.env.device_type, dtype=self.amp_dtype)

    def _evaluate(self) -> dict | None:
        """Mean loss over the fixed validation batches (split over ranks), and bits per byte."""
        import torch
        import torch.nn.functional as F

        from lmforge.train.dist import all_reduce_mean

        if not self.val:
            return None
        self.model.eval()
        sums = torch.zeros(3, device=self.env.device, dtype=torch.float64)  # nats, nats w/o BOS, tokens
        with torch.no_grad(), self._autocast():
            # FSDP: every rank must run every forward (they gather weights together); a rank past
            # the end runs batch 0 and counts nothing.
            end = -(-len(self.val) // self.env.world_size) * self.env.world_size if self.fsdp else len(self.val)
            for i in range(self.env.rank, end, self.env.world_size):
                x, y = (torch.from_numpy(a).to(self.env.device) for a in self.val[i % len(self.val)])
                logits, _ = self.model(x)
                if i >= len(self.val):
                    continue
                nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
                sums += torch.stack([nats.sum(), nats[y.flatten() != self.bos_id].sum(),
                                     torch.tensor(float(y.numel()), device=nats.device)]).double()
        self.model.train()
        sums = all_reduce_mean(sums, self.env)
        val_loss = float(sums[0] / sums[2])
        bpb = float(sums[1] * self.env.world_size / math.log(2) / self.val_bytes) if self.val_bytes else None
        self.log(f"[train] step {self.step} | val loss {val_loss:.4f}" + (f" | val bpb {bpb:.4f}" if bpb else ""))
        self._metric({"kind": "val", "step": self.step, "val_loss": round(val_loss, 6),
                      "val_bpb": round(bpb, 6) if bpb else None})
        return {"val_loss": val_loss, "val_bpb": bpb}

    # ------------------------------------------------------------------ output

    def _raise_measured_peak(self, dt: float) -> float:
        """A step faster than the measured matmul peak means that peak was measured while other work
        held the cores: the step's own FLOP/s becomes the peak (and the cached one), so MFU stays <= 1."""
        from lmforge.train.resources import raise_cached_peak

        self.peak = self.flops_per_step / dt
        per_process = self.peak / self.env.world_size
        if not getattr(self, "peak_raised", False):
            self.peak_raised = True
            self.log(f"[train] a step ran above the measured matmul peak (measured on a busy machine?): "
                     f"peak raised to {per_process / 1e9:,.0f} GFLOP/s per process")
        if self.env.rank == 0:
            raise_cached_peak(self.measured_peak_dtype, per_process)
        return 1.0

    def _log_step(self, loss, grad_norm, lr, dt, t_start, start_step) -> None:
        tok_s = self.tokens_per_step / dt
        mfu = self.flops_per_step / dt / self.peak if self.peak else None
        if mfu is not None and mfu > 1 and getattr(self, "measured_peak_dtype", None):
            mfu = self._raise_measured_peak(dt)
        done = self.step - start_step
        eta = (time.time() - t_start) / done * (self.tc.max_steps - self.step)
        if self.step % self.tc.log_every == 0 or self.step == self.tc.max_steps:
            mfu_text = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
            self.log(f"step {self.step:>{len(str(self.tc.max_steps))}}/{self.tc.max_steps} | loss {loss:.4f} | "
                     f"lr {lr:.2e} | grad {grad_norm:.3f} | {1000 * dt:.0f} ms | {tok_s:,.0f} tok/s | "
                     f"mfu {mfu_text} | eta {_duration(eta)}")
        self._metric({"kind": "train", "step": self.step, "loss": round(loss, 6), "lr": lr,
                      "grad_norm": round(grad_norm, 6), "ms": round(1000 * dt, 2), "tok_per_s": round(tok_s, 1),
                      "mfu": round(mfu, 6) if mfu is not None else None, "tokens": self.tokens_seen})

    def _metric(self, record: dict) -> None:
        if self.env.is_main:
            try:
                self.rd.root.mkdir(parents=True, exist_ok=True)
                with open(self.rd.metrics, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:  # a full disk: a half line is dropped by the resume
                from lmforge.train.checkpoint import latest_checkpoint

                raise LmforgeError(f"{self.rd.metrics}: cannot write ({exc.strerror or exc}); make room, then rerun: "
                                   f"it resumes from {latest_checkpoint(self.rd.checkpoints) or 'the start'}") from None

    def _save(self) -> None:
        from lmforge.train.checkpoint import save_checkpoint

        model, optimizer = self.model, self.optimizer
        if self.fsdp:  # gather the full weights and optimizer state for rank 0 (every rank takes part)
            from lmforge.train.fsdp import gather_for_checkpoint

            model, optimizer = gather_for_checkpoint(self.model, self.optimizer)
        if self.env.is_main:
            state = {"tokens": self.tokens_seen, "tokens_id": self.tokens_id, "data": self.loader.state()}
            if self.scaler.is_enabled():
                state["scaler"] = self.scaler.state_dict()
            path = save_checkpoint(self.rd.checkpoints, model, optimizer, self.step, self.rd.tokenizer,
                                   state, self.tc.keep_checkpoints)
            self.log(f"[train] saved {path}")
        self._saved_step = self.step
        if self.env.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _stats(self, losses, val, seconds, exhausted) -> dict:
        stats = {"steps": self.step, "tokens": self.tokens_seen, "params": self.model.num_params(),
                 "final_loss": losses[-1] if losses else None, "world_size": self.env.world_size,
                 "device": self.env.device, "data_exhausted": exhausted, "windows_per_source": self.loader.counts(),
                 "sources": self.loader.source_report(), "train_seconds": round(seconds, 2)}
        if losses:
            stats["tok_per_s"] = round(self.tokens_per_step * len(losses) / seconds, 1)
        if val:
            stats.update({k: v for k, v in val.items() if v is not None})
        return stats


def _amp_dtype(setting: str, device: str):
    """(autocast dtype or None for float32, why). ``auto`` on a CPU is decided by the caller (measured)."""
    import torch

    if setting != "auto":
        return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[setting], "as configured"
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "a GPU with bf16"
    return None, f"no bf16 autocast on {device}"


def _metric_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinite for a line a killed run cut in half (dropped)."""
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf
    return record.get("step", 0) if isinstance(record, dict) and isinstance(record.get("step", 0), int) else math.inf


def _fingerprint(path) -> str:
    """Identifies the token shards a checkpoint was trained on (the manifest lists them all)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"

