"""Config of the train stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class TrainConfig:
    """``[train]``: next-token prediction with AdamW, warmup and cosine decay."""

    # Settings that change how fast, not what: outside the stage fingerprint (lmforge/fingerprint.py).
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({
        "threads", "log_every", "checkpoint_every", "keep_checkpoints", "device", "compile", "peak_flops"})

    max_steps: int = 200
    batch_size: int = 16
    """Sequences per micro-batch (per process)."""
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    """The cosine decay ends at lr * min_lr_ratio."""
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
    device: str = "auto"
    """auto, cpu, cuda, cuda:N, mps."""
    dtype: str = "auto"
    """auto (bf16 on a GPU that has it, else fp32), float32, bfloat16, float16."""
    compile: bool = False
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    peak_flops: float = 0.0
    """Peak FLOP/s of one process, for the MFU column (0 = a table of GPUs, or ~100 GFLOP/s per CPU thread)."""
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
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(f"dtype: {self.dtype!r} is not one of auto, float32, bfloat16, float16")
        if self.peak_flops < 0 or self.threads < 0 or self.eval_every < 0 or self.checkpoint_every < 0:
            problems.append("peak_flops, threads, eval_every, checkpoint_every: must be >= 0")
        if self.warmup_steps < 0 or self.eval_batches < 0 or self.log_every < 1:
            problems.append("warmup_steps, eval_batches: must be >= 0; log_every: at least 1")
        problems += [f"epochs.{k}: must be > 0" for k, v in self.epochs.items() if v <= 0]
        problems += [f"mixture.{k}: weight must be > 0" for k, v in self.mixture.items() if v <= 0]
        return problems
