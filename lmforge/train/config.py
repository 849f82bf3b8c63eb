"""Config of the train stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

OPTIMIZERS = ("muon", "adamw")
SCHEDULES = ("wsd", "cosine")
PARALLEL = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """``[train]``: next-token prediction with Muon + AdamW (or AdamW alone), warmup then WSD or cosine."""

    # Settings that change how fast, not what: outside the stage fingerprint. dtype, optimizer,
    # parallel and init_from change the numbers, so they are in it.
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({
        "threads", "log_every", "checkpoint_every", "keep_checkpoints", "device", "compile", "peak_flops"})

    max_steps: int = 200
    batch_size: int = 16
    """Sequences per micro-batch (per process)."""
    grad_accum: int = 1
    optimizer: str = "adamw"
    """muon: Muon on the hidden 2-D weights, AdamW on embeddings, head and gains; adamw: AdamW on all."""
    lr: float = 3e-3
    """Peak learning rate of AdamW (every AdamW group whose own lr below is 0)."""
    embed_lr: float = 0.0
    """AdamW lr of the token embedding (0 = lr)."""
    head_lr: float = 0.0
    """AdamW lr of an untied output head (0 = lr; a tied head is the embedding)."""
    muon_lr: float = 0.02
    """Peak lr of Muon (Keller Jordan's Muon and modded-nanogpt use 0.02-0.05)."""
    muon_momentum: float = 0.95
    schedule: str = "cosine"
    """cosine: warmup, then a half cosine to lr * min_lr_ratio; wsd: warmup, constant, linear warmdown."""
    warmdown_fraction: float = 0.2
    """wsd: the last fraction of max_steps decays linearly to lr * min_lr_ratio (nanochat: 0.2)."""
    min_lr_ratio: float = 0.1
    """The decay ends at lr * min_lr_ratio."""
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 10
    log_every: int = 1
    checkpoint_every: int = 0
    """Save a checkpoint every N steps (0 = only at the end)."""
    keep_checkpoints: int = 2
    """Keep the newest N checkpoints (0 = keep them all)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N, mps."""
    dtype: str = "auto"
    """auto (bf16 on a GPU that has it, else fp32), float32, bfloat16, float16."""
    compile: bool = False
    parallel: str = "ddp"
    """Several processes: ddp (a copy of the model per process) or fsdp (parameters sharded, FSDP2)."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    peak_flops: float = 0.0
    """Peak FLOP/s of one process, for the MFU column (0 = a table of GPUs, or ~100 GFLOP/s per CPU thread)."""
    init_from: str = ""
    """Start from these weights: a Hugging Face Llama folder (with tokenizer.json) or another run's
    checkpoint; the model shape comes from it (seq_len from [model]). Ignored once this run has a checkpoint."""
    mixture: dict[str, float] = field(default_factory=dict)
    """Sampling weight per source; empty weighs sources by their token counts."""
    epochs: dict[str, float] = field(default_factory=dict)
    """Maximum epochs per source; a source that reaches it stops being sampled."""

    def validate(self) -> list[str]:
        problems = []
        for name in ("max_steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            problems.append("lr must be > 0 and min_lr_ratio in [0, 1]")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.parallel not in PARALLEL:
            problems.append(f"parallel: {self.parallel!r} is not one of {', '.join(PARALLEL)}")
        if min(self.embed_lr, self.head_lr) < 0 or self.muon_lr <= 0 or not 0 <= self.muon_momentum < 1:
            problems.append("embed_lr, head_lr: must be >= 0 (0 = lr); muon_lr > 0; muon_momentum in [0, 1)")
        if not 0 <= self.warmdown_fraction <= 1 or self.weight_decay < 0 or self.grad_clip < 0:
            problems.append("warmdown_fraction: must be in [0, 1]; weight_decay, grad_clip: >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            problems.append("beta1, beta2: must be in [0, 1)")
        if not _is_device_name(self.device):
            problems.append(f"device: {self.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(f"dtype: {self.dtype!r} is not one of auto, float32, bfloat16, float16")
        if min(self.peak_flops, self.threads, self.eval_every, self.checkpoint_every, self.keep_checkpoints) < 0:
            problems.append("peak_flops, threads, eval_every, checkpoint_every, keep_checkpoints: must be >= 0")
        if self.warmup_steps < 0 or self.eval_batches < 0 or self.log_every < 1:
            problems.append("warmup_steps, eval_batches: must be >= 0; log_every: at least 1")
        problems += [f"epochs.{k}: must be > 0" for k, v in self.epochs.items() if v <= 0]
        problems += [f"mixture.{k}: weight must be > 0" for k, v in self.mixture.items() if v <= 0]
        return problems


def _is_device_name(name: str) -> bool:
    """auto, cpu, mps, cuda or cuda:N (whether it is present is checked when training starts)."""
    kind, colon, index = name.partition(":")
    return name in ("auto", "cpu", "mps", "cuda") or (kind == "cuda" and colon and index.isdigit())
