"""AdamW with decay on matrices only, and the learning-rate schedule: linear warmup, cosine decay."""

from __future__ import annotations

import inspect
import math

import torch

from lmforge.train.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW; weight decay on 2-D weights (matmuls, embeddings), none on norms' gains (as nanoGPT).

    The fused kernel is used on CUDA, the foreach one elsewhere (both give the same update).
    """
    params = {id(p): p for p in model.parameters() if p.requires_grad}  # a tied weight once
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {}
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        extra["fused"] = True
    else:
        extra["foreach"] = True
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **extra)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of update ``step`` (0-based).

    Linear warmup over warmup_steps (step 0 gets lr / warmup_steps), then a half cosine from lr
    down to lr * min_lr_ratio at max_steps (Loshchilov & Hutter 2017; GPT-3 and nanoGPT decay to
    10% of the peak, our default min_lr_ratio).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
