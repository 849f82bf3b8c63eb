"""The GPT: shapes, causality, the reference check against HF LlamaForCausalLM, init loss, learning."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT, from_hf, mlp_hidden_size, to_hf


def small(**kw) -> ModelConfig:
    base = dict(n_layer=2, n_head=4, n_embd=64, seq_len=32, vocab_size=101)
    return ModelConfig(**{**base, **kw})


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    model = GPT(small())
    idx = torch.randint(0, 101, (3, 20))
    logits, loss = model(idx)
    assert logits.shape == (3, 20, 101) and loss is None
    _, loss = model(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    torch.manual_seed(0)
    model = GPT(small(n_kv_head=2)).eval()
    idx = torch.randint(0, 101, (1, 24))
    changed = idx.clone()
    changed[0, 15] = (idx[0, 15] + 1) % 101
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=2, tie_embeddings=False, rope_theta=500.0),
                                dict(n_kv_head=1, mlp_ratio=3.0)])
def test_logits_equal_hf_llama_on_the_same_weights(kw):
    """The reference check: HF's LlamaForCausalLM given our weights computes our logits."""
    torch.manual_seed(0)
    model = GPT(small(**kw)).eval()
    with torch.no_grad():  # make the norm gains non-trivial so a misplaced norm shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    hf = to_hf(model)
    idx = torch.randint(0, 101, (2, 32))
    with torch.no_grad():
        ours, theirs = model(idx)[0], hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert sum(p.numel() for p in hf.parameters()) == model.num_params()
    back = from_hf(hf)
    assert back.config == model.config  # round ratios and n_kv_head = 0 come back as they were
    torch.testing.assert_close(back(idx)[0], ours, atol=0, rtol=0)


def test_hf_export_changes_with_rope_theta():
    """Guards the parity test: a wrong rope_theta in the export would give other logits."""
    torch.manual_seed(0)
    model = GPT(small(rope_theta=500.0)).eval()
    hf = to_hf(model)
    hf.config.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
    other = type(hf)(hf.config)
    other.load_state_dict(hf.state_dict())
    idx = torch.randint(0, 101, (1, 32))
    assert not torch.allclose(model(idx)[0], other.eval()(idx).logits, atol=1e-3)


def test_loss_at_init_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(small(vocab_size=512))
    idx, targets = torch.randint(0, 512, (2, 4, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(512)) < 0.1


def test_tiny_model_overfits_a_repeated_sequence():
    torch.manual_seed(0)
    model = GPT(small())
    seq = torch.randint(0, 101, (1, 33)).repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * math.log(101)


def test_kv_cache_prefill_then_decode_equals_full_forward():
    torch.manual_seed(0)
    model = GPT(small(n_kv_head=2)).eval()
    idx = torch.randint(0, 101, (2, 20))
    full = model(idx)[0]
    cache = model.new_kv_cache(batch=2)
    parts = [model(idx[:, :12], kv_cache=cache, start_pos=0)[0]]
    parts.append(model(idx[:, 12:15], kv_cache=cache, start_pos=12)[0])  # several tokens after a prefix
    parts += [model(idx[:, i:i + 1], kv_cache=cache, start_pos=i)[0] for i in range(15, 20)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_counts_and_flops_known_answer():
    cfg = small(tie_embeddings=True)
    model = GPT(cfg)
    hidden = mlp_hidden_size(cfg)  # 2/3 * 4 * 64 = 170.7 -> 192
    assert hidden == 192
    per_layer = 4 * 64 * 64 + 3 * 64 * hidden + 2 * 64
    assert model.num_params() == 101 * 64 + 2 * per_layer + 64
    matmul = 101 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * hidden)
    assert model.flops_per_token() == 6 * matmul + 12 * 2 * 64 * 32


def test_sequence_longer_than_seq_len_is_refused():
    model = GPT(small())
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
