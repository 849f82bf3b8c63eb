"""Optimizers and the learning-rate schedule.

``optimizer = "muon"``: Muon (Newton–Schulz-orthogonalised momentum; Keller Jordan 2024;
torch.optim.Muon's update, batched over same-shape matrices in lmforge.train.muon) on the hidden
2-D weights, AdamW on the token embedding, an untied head and the norms' gains, as in
modded-nanogpt and nanochat. ``"adamw"``: AdamW on everything. Every group keeps its own peak lr
(``initial_lr``); the schedule scales them all by one factor.

Under DDP the gradients are all-reduced before ``step()``, so every rank orthogonalises the same
matrix and applies the same update.
"""

from __future__ import annotations

import inspect
import math

import torch

from lmforge.errors import LmforgeError
from lmforge.train.config import TrainConfig


def parameter_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters by role: ``hidden`` (2-D weights inside the blocks), ``embed``, ``head``, ``gains``.

    A tied head is the embedding and appears once, under ``embed``.
    """
    groups: dict[str, list] = {"hidden": [], "embed": [], "head": [], "gains": []}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.dim() < 2:
            groups["gains"].append(p)
        elif name.startswith("embed_tokens"):
            groups["embed"].append(p)
        elif name.startswith("lm_head"):
            groups["head"].append(p)
        else:
            groups["hidden"].append(p)
    return groups


class OptimizerSet:
    """Several optimizers stepped as one: the interface of torch.optim.Optimizer the trainer uses."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {k: v for opt in self.optimizers.values() for k, v in opt.state.items()}

    def step(self, closure=None):
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise LmforgeError(f"the checkpoint's optimizer state is for {', '.join(sorted(state)) or 'another'}"
                               f" optimizer, this run uses {', '.join(sorted(self.optimizers))} (train.optimizer "
                               "changed?); restore the setting or start a new run")
        for name, opt in self.optimizers.items():
            peaks = [g["initial_lr"] for g in opt.param_groups]  # this run's settings, not the checkpoint's
            try:
                opt.load_state_dict(state[name])
            except (ValueError, KeyError) as e:
                raise LmforgeError(f"the checkpoint's {name} state does not fit this model's parameters ({e}); "
                                   "restore the [model]/[train] settings or start a new run") from None
            for group, peak in zip(opt.param_groups, peaks):
                group["initial_lr"] = peak


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str,
                    ns_dtype: torch.dtype | None = None) -> OptimizerSet:
    """Muon + AdamW or AdamW alone, per ``cfg.optimizer``; weight decay on 2-D weights only (nanoGPT).

    ``ns_dtype``: Muon's Newton–Schulz dtype; None = bfloat16 on a GPU, float32 elsewhere (the
    trainer passes bfloat16 when it trains in bf16 autocast, i.e. when this CPU's bf16 is fast).
    """
    groups = parameter_groups(model)
    adam_groups = [
        {"params": groups["embed"], "lr": cfg.embed_lr or cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["head"], "lr": cfg.head_lr or cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["gains"], "lr": cfg.lr, "weight_decay": 0.0},
    ]
    optimizers = {}
    if cfg.optimizer == "muon":
        # Muon's update has unit spectral norm per matrix; torch scales lr by sqrt(max(1, rows/cols))
        # as Keller Jordan's reference does. Its weight decay is decoupled, like AdamW's.
        from lmforge.train.muon import Muon

        if ns_dtype is None:
            ns_dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
        optimizers["muon"] = Muon(groups["hidden"], lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                                  weight_decay=cfg.weight_decay, nesterov=True, ns_dtype=ns_dtype)
    else:
        adam_groups.insert(0, {"params": groups["hidden"], "lr": cfg.lr, "weight_decay": cfg.weight_decay})
    adam_groups = [g for g in adam_groups if g["params"]]
    extra = {}
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        extra["fused"] = True  # one kernel on CUDA; the foreach one elsewhere (the same update)
    else:
        extra["foreach"] = True
    optimizers["adamw"] = torch.optim.AdamW(adam_groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **extra)
    for opt in optimizers.values():
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    return OptimizerSet(optimizers)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of every group's peak lr at update ``step`` (0-based).

    Linear warmup over warmup_steps (step 0 gets 1 / warmup_steps). Then ``cosine``: a half cosine
    down to min_lr_ratio at max_steps (Loshchilov & Hutter 2017; GPT-3 and nanoGPT decay to 10%).
    ``wsd`` (warmup-stable-decay; Hu et al. 2024, "MiniCPM"; nanochat, modded-nanogpt): 1 until the
    last ``warmdown_fraction`` of max_steps, then a straight line to min_lr_ratio at max_steps.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_start = max(cfg.warmup_steps, cfg.max_steps - round(cfg.warmdown_fraction * cfg.max_steps))
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, cfg.max_steps - decay_start))
        return 1.0 - (1.0 - floor) * progress
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """AdamW's main learning rate at update ``step``: ``cfg.lr * lr_factor``."""
    return cfg.lr * lr_factor(step, cfg)


def set_lr(optimizer, factor: float) -> None:
    """Scale every group's peak lr by the schedule's factor."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
