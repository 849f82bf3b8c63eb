"""Optimizers and schedules: which tensors Muon gets, one Muon step by hand, WSD values at known steps."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT
from lmforge.train.config import TrainConfig
from lmforge.train.muon import Muon
from lmforge.train.optim import build_optimizer, lr_at, lr_factor, parameter_groups, set_lr


def model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**dict(n_layer=2, n_head=2, n_embd=32, seq_len=16, vocab_size=50), **kw}))


def names_by_optimizer(opt, m) -> dict[str, set[str]]:
    name_of = {id(p): n for n, p in m.named_parameters()}
    return {key: {name_of[id(p)] for g in o.param_groups for p in g["params"]} for key, o in opt.optimizers.items()}


def test_muon_gets_the_hidden_matrices_and_adamw_the_rest():
    m = model(tie_embeddings=False, qk_norm=True)
    opt = build_optimizer(m, TrainConfig(optimizer="muon", lr=1e-3, embed_lr=0.3, head_lr=0.004, muon_lr=0.05),
                          "cpu")
    names = names_by_optimizer(opt, m)
    hidden = {n for n, p in m.named_parameters() if p.dim() == 2 and n.startswith("layers.")}
    assert len(hidden) == 2 * 7  # q, k, v, o, gate, up, down per layer
    assert names["muon"] == hidden
    assert names["adamw"] == {n for n, _ in m.named_parameters()} - hidden
    assert {"embed_tokens.weight", "lm_head.weight", "norm.weight", "layers.0.self_attn.q_norm.weight"} <= names["adamw"]
    lrs = {(key, g["lr"], g["weight_decay"]) for key, o in opt.optimizers.items() for g in o.param_groups}
    assert lrs == {("muon", 0.05, 0.1), ("adamw", 0.3, 0.1), ("adamw", 0.004, 0.1), ("adamw", 1e-3, 0.0)}
    # Newton-Schulz in float32 on a CPU unless the trainer asks for bf16 (it trains in bf16 there)
    assert opt.optimizers["muon"].ns_dtype == torch.float32
    muon = TrainConfig(optimizer="muon")
    assert build_optimizer(m, muon, "cuda").optimizers["muon"].ns_dtype == torch.bfloat16
    assert build_optimizer(m, muon, "cpu", torch.bfloat16).optimizers["muon"].ns_dtype == torch.bfloat16


def test_adamw_alone_and_a_tied_head_counted_once():
    m = model()
    groups = parameter_groups(m)
    assert groups["head"] == [] and groups["embed"] == [m.embed_tokens.weight]
    opt = build_optimizer(m, TrainConfig(optimizer="adamw"), "cpu")
    assert set(opt.optimizers) == {"adamw"}
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == m.num_params()


def newton_schulz_by_hand(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's quintic iteration, float64: X <- aX + (bA + cA^2)X with A = XX^T, X = G/|G|_F."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double().T if g.size(0) > g.size(1) else g.double()
    x = x / x.norm()
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if g.size(0) > g.size(1) else x


def muon_update(w0: torch.Tensor, w: torch.Tensor, lr: float, wd: float) -> torch.Tensor:
    """The orthogonalised update a Muon step applied, recovered from the weights before and after.

    The lr is scaled by sqrt(max(1, rows / cols)) (Keller Jordan's reference, torch's default).
    """
    scale = lr * math.sqrt(max(1.0, w0.size(0) / w0.size(1)))
    return (w0.double() * (1 - lr * wd) - w.detach().double()) / scale


@pytest.mark.parametrize("ns_dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 0.02)])
def test_one_muon_step_equals_the_hand_computed_newton_schulz_update(ns_dtype, tol):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 4))
    w0 = w.detach().clone()
    g = torch.randn(8, 4)
    w.grad = g.clone()
    lr, wd, mu = 0.02, 0.1, 0.95
    Muon([w], lr=lr, weight_decay=wd, momentum=mu, nesterov=True, ns_dtype=ns_dtype).step()
    # First step: the Nesterov update is a multiple of g, and NS is scale-invariant, so it is NS(g).
    update = muon_update(w0, w, lr, wd)
    expected = newton_schulz_by_hand(g)
    torch.testing.assert_close(update, expected, atol=tol, rtol=0)  # bf16: an 8-bit mantissa
    assert (update - g.double() / g.norm()).abs().max() > 0.2  # far from the un-orthogonalised gradient
    # and the update is near-orthogonal: its singular values lie in about (0.5, 1.5)
    sv = torch.linalg.svdvals(newton_schulz_by_hand(g))
    assert 0.5 < sv.min() and sv.max() < 1.5


def test_batched_muon_updates_each_matrix_as_alone_and_as_torch_in_bf16():
    """Same-shape matrices (tall ones transposed) are stacked; each still gets its own NS update."""
    torch.manual_seed(1)
    shapes = [(8, 4), (4, 8), (8, 4), (6, 6), (16, 4), (6, 6)]
    w0 = [torch.randn(*s) for s in shapes]
    grads = [torch.randn(*s) for s in shapes]

    def stepped(cls, **kw):
        ws = [torch.nn.Parameter(w.clone()) for w in w0]
        for w, g in zip(ws, grads):
            w.grad = g.clone()
        cls(ws, lr=0.02, weight_decay=0.1, momentum=0.95, **kw).step()
        return ws

    for w, a, g in zip(stepped(Muon, ns_dtype=torch.float32), w0, grads):
        torch.testing.assert_close(muon_update(a, w, 0.02, 0.1), newton_schulz_by_hand(g), atol=1e-4, rtol=0)
    # In bf16 it is torch.optim.Muon's arithmetic exactly, so checkpoints and results carry over.
    for mine, ref in zip(stepped(Muon, ns_dtype=torch.bfloat16), stepped(torch.optim.Muon)):
        torch.testing.assert_close(mine, ref, atol=0, rtol=0)


def test_optimizer_set_state_round_trips_and_refuses_another_optimizer():
    m = model()
    opt = build_optimizer(m, TrainConfig(optimizer="muon"), "cpu")
    m(torch.randint(0, 50, (2, 16)), torch.randint(0, 50, (2, 16)))[1].backward()
    opt.step()
    state = opt.state_dict()
    again = build_optimizer(model(), TrainConfig(optimizer="muon"), "cpu")
    again.load_state_dict(state)
    assert len(again.state) == len(opt.state) > 0
    with pytest.raises(LmforgeError, match="train.optimizer"):
        build_optimizer(model(), TrainConfig(optimizer="adamw"), "cpu").load_state_dict(state)


def test_set_lr_scales_every_group_by_the_schedule():
    m = model(tie_embeddings=False)
    opt = build_optimizer(m, TrainConfig(optimizer="muon", lr=0.01, head_lr=0.002, muon_lr=0.04), "cpu")
    set_lr(opt, 0.5)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.001, 0.005, 0.005, 0.02])


def test_wsd_schedule_known_values():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=100, schedule="wsd", warmdown_fraction=0.2,
                      min_lr_ratio=0.0)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == lr_factor(50, cfg) == lr_factor(79, cfg) == 1.0  # stable
    assert lr_factor(80, cfg) == pytest.approx(1.0)  # the warmdown starts at step 80 ...
    assert lr_factor(90, cfg) == pytest.approx(0.5)  # ... and is a straight line ...
    assert lr_factor(95, cfg) == pytest.approx(0.25)
    assert lr_factor(100, cfg) == pytest.approx(0.0)  # ... to min_lr_ratio at max_steps
    cfg.min_lr_ratio = 0.1
    assert lr_at(90, cfg) == pytest.approx(0.55)
    assert lr_factor(500, cfg) == pytest.approx(0.1)


def test_wsd_without_a_stable_phase_decays_right_after_warmup():
    cfg = TrainConfig(lr=1.0, warmup_steps=5, max_steps=10, schedule="wsd", warmdown_fraction=1.0, min_lr_ratio=0.0)
    assert lr_factor(4, cfg) == 1.0 and lr_factor(5, cfg) == 1.0
    assert lr_factor(7, cfg) == pytest.approx(0.6) and lr_factor(10, cfg) == 0.0


@pytest.mark.parametrize("field,value", [("optimizer", "sgd"), ("schedule", "linear"), ("warmdown_fraction", 1.5),
                                         ("muon_lr", 0.0), ("muon_momentum", 1.0), ("parallel", "tp"),
                                         ("device", "gpu"), ("device", "cuda:x"), ("keep_checkpoints", -1)])
def test_bad_train_settings_are_reported(field, value):
    cfg = TrainConfig(**{field: value})
    assert any(field in problem for problem in cfg.validate())
