"""The [model] options: shapes, causality and the KV cache for each, what each does, export refusal."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT, mlp_hidden_size, to_hf

OPTIONS = [dict(qk_norm=True), dict(mlp="relu2"), dict(tie_embeddings=False), dict(zero_init_proj=True),
           dict(logit_softcap=15.0),
           dict(qk_norm=True, mlp="relu2", tie_embeddings=False, zero_init_proj=True, logit_softcap=15.0, n_kv_head=2)]


def small(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(n_layer=2, n_head=4, n_embd=64, seq_len=32, vocab_size=101), **kw})


def trained_a_little(cfg: ModelConfig) -> GPT:
    """A few steps, so zero-initialised projections are no longer zero and every path is exercised."""
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        idx = torch.randint(0, 101, (2, 32))
        model(idx, idx)[1].backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.mark.parametrize("kw", OPTIONS)
def test_each_option_keeps_shapes_and_causality(kw):
    model = trained_a_little(small(**kw))
    idx = torch.randint(0, 101, (3, 24))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 24, 101) and torch.isfinite(loss)
    changed = idx.clone()
    changed[:, 15] = (idx[:, 15] + 1) % 101
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :15], b[:, :15])
    assert not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("kw", OPTIONS)
def test_each_option_gives_the_same_logits_through_the_kv_cache(kw):
    model = trained_a_little(small(**kw))
    idx = torch.randint(0, 101, (2, 20))
    with torch.no_grad():
        full = model(idx)[0]
        cache = model.new_kv_cache(batch=2)
        steps = [model(idx[:, :12], kv_cache=cache)[0]]
        steps += [model(idx[:, t:t + 1], kv_cache=cache, start_pos=t)[0] for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def test_relu2_mlp_has_two_matrices_of_width_ratio_times_n_embd():
    model = GPT(small(mlp="relu2"))
    mlp = model.layers[0].mlp
    assert not hasattr(mlp, "gate_proj") and mlp.up_proj.weight.shape == (256, 64) == (mlp_hidden_size(small(mlp="relu2")), 64)
    x = torch.randn(5, 64)
    torch.testing.assert_close(mlp(x), mlp.down_proj(torch.relu(mlp.up_proj(x)) ** 2))


def test_untied_head_is_its_own_matrix():
    model = GPT(small(tie_embeddings=False))
    assert model.lm_head.weight.data_ptr() != model.embed_tokens.weight.data_ptr()
    assert model.num_params() == GPT(small()).num_params() + 101 * 64


def test_zero_init_projections_make_every_block_start_as_the_identity():
    torch.manual_seed(0)
    model = GPT(small(zero_init_proj=True)).eval()
    assert all(float(p.detach().abs().max()) == 0 for n, p in model.named_parameters() if n.endswith(("o_proj.weight",
                                                                                             "down_proj.weight")))
    idx = torch.randint(0, 101, (2, 10))
    with torch.no_grad():
        expected = model.lm_head(model.norm(model.embed_tokens(idx)))
        torch.testing.assert_close(model(idx)[0], expected)


def test_logit_softcap_bounds_the_logits():
    torch.manual_seed(0)
    model = GPT(small(logit_softcap=2.0))
    with torch.no_grad():
        model.lm_head.weight.mul_(1000)  # raw logits in the hundreds
        logits = model(torch.randint(0, 101, (1, 8)))[0]
    assert float(logits.abs().max()) <= 2.0 and float(logits.abs().max()) > 1.9


def test_qk_norm_normalises_queries_and_keys_per_head():
    model = GPT(small(qk_norm=True))
    attn = model.layers[0].self_attn
    assert attn.q_norm.weight.shape == attn.k_norm.weight.shape == (16,)
    assert "layers.0.self_attn.q_norm.weight" in model.state_dict()


@pytest.mark.parametrize("kw,named", [(dict(qk_norm=True), "qk_norm = true"), (dict(mlp="relu2"), 'mlp = "relu2"'),
                                      (dict(logit_softcap=15.0), "logit_softcap = 15.0")])
def test_export_refuses_an_option_llama_cannot_express(kw, named):
    pytest.importorskip("transformers")
    with pytest.raises(LmforgeError, match=f"uses {named}.*LlamaForCausalLM cannot express"):
        to_hf(GPT(small(**kw)))


def test_export_accepts_options_llama_can_express():
    pytest.importorskip("transformers")
    model = trained_a_little(small(tie_embeddings=False, zero_init_proj=True))
    idx = torch.randint(0, 101, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(to_hf(model)(idx).logits, model(idx)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", [dict(), dict(logit_softcap=15.0, tie_embeddings=False), dict(logit_softcap=2.0)])
def test_fused_head_loss_equals_the_logits_path_in_value_and_gradients(kw):
    """return_logits=False computes the head and cross-entropy chunk by chunk; nothing else may change."""
    import lmforge.model.loss as loss_module

    model = trained_a_little(small(**kw)).train().double()
    idx = torch.randint(0, 101, (3, 32))
    targets = idx.roll(-1, dims=1)
    targets[:, -3:] = -1  # ignored positions count for nothing
    _, ref = model(idx, targets)
    ref_grads = torch.autograd.grad(ref * 0.5, list(model.parameters()))
    old = loss_module.CHUNK_ELEMENTS
    loss_module.CHUNK_ELEMENTS = 101 * 20  # several chunks, the last one partial (96 rows)
    try:
        logits, fused = model(idx, targets, return_logits=False)
        grads = torch.autograd.grad(fused * 0.5, list(model.parameters()))
    finally:
        loss_module.CHUNK_ELEMENTS = old
    assert logits is None
    # the logits path rounds the logits to float32, hence float32's tolerance on a float64 model
    torch.testing.assert_close(fused, ref.double(), atol=1e-6, rtol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-7, rtol=1e-5)


def test_relu2_matches_relu_squared_with_autograd():
    from lmforge.model.gpt import _ReLUSquared

    x = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_ReLUSquared.apply, (x,))
    torch.testing.assert_close(_ReLUSquared.apply(x), torch.relu(x) ** 2)
