"""The decoding step (fused weights, RoPE as a matrix) against the model's own forward and against
transformers; batched greedy decoding against one prompt at a time."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT
from lmforge.sample.decode import Decoder
from lmforge.sample.engine import Engine

OPTIONS = [{}, {"n_kv_head": 2}, {"qk_norm": True}, {"mlp": "relu2"}, {"logit_softcap": 5.0},
           {"tie_embeddings": False}]


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, n_head=4, n_embd=64, seq_len=40, vocab_size=97, **kw)).eval()
    with torch.no_grad():  # gains away from 1 and larger weights, so a missed gain or a wrong rotation shows
        for p in model.parameters():
            p.normal_(0.5 if p.dim() == 1 else 0.0, 0.2)
    return model


@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "llama")
def test_step_gives_the_logits_of_the_full_forward(kw):
    model = make_model(**kw)
    idx = torch.randint(0, 97, (3, 24))
    with torch.no_grad():
        full = model(idx)[0]
        cache = model.new_kv_cache(3)
        model(idx[:, :6], kv_cache=cache)
        decoder = Decoder(model)
        steps = torch.stack([decoder.step(idx[:, t], cache, t) for t in range(6, 24)], dim=1)
    assert torch.allclose(steps, full[:, 6:], atol=1e-4, rtol=1e-4), (steps - full[:, 6:]).abs().max()


def test_step_follows_weights_changed_after_the_engine_was_built():
    model = make_model()
    engine = Engine(model)
    before = list(engine.generate([1, 2, 3], 12, temperature=0))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.3)  # in place, as a load or an optimizer step writes them
    after = list(engine.generate([1, 2, 3], 12, temperature=0))
    assert after == list(engine.generate([1, 2, 3], 12, temperature=0, use_cache=False))
    assert after != before


def test_a_model_built_in_inference_mode_decodes():
    with torch.inference_mode():
        model = make_model()
    assert list(Engine(model).generate([1, 2, 3], 12, temperature=0)) == \
        list(Engine(model).generate([1, 2, 3], 12, temperature=0, use_cache=False))


def test_generate_batch_equals_generate_one_prompt_at_a_time():
    model = make_model(n_kv_head=2)
    engine = Engine(model)
    prompts = torch.randint(0, 97, (5, 7), generator=torch.Generator().manual_seed(1)).tolist()
    rows = engine.generate_batch(prompts, 20)
    assert rows == [list(engine.generate(p, 20, temperature=0)) for p in prompts]


def test_generate_batch_cuts_each_row_at_its_stop_token():
    model = make_model()
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    free = Engine(model).generate_batch(prompts, 15)
    stop = free[0][4]
    rows = Engine(model, stop_ids={stop}).generate_batch(prompts, 15)
    for row, full in zip(rows, free):
        expected = full[:full.index(stop)] if stop in full else full
        assert row == expected
    assert rows[0] == free[0][:free[0].index(stop)]


def test_generate_batch_refuses_what_it_cannot_do():
    engine = Engine(make_model())
    with pytest.raises(LmforgeError, match="one same length"):
        engine.generate_batch([[1, 2], [3]], 4)
    with pytest.raises(LmforgeError, match="one same length"):
        engine.generate_batch([], 4)
    with pytest.raises(LmforgeError, match="exceed seq_len 40"):
        engine.generate_batch([[1, 2, 3]], 38)
    assert engine.generate_batch([[1, 2]], 0) == [[]]


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 2}])
def test_greedy_tokens_equal_transformers_generate(kw):
    pytest.importorskip("transformers")
    from lmforge.model.gpt import to_hf

    model = make_model(**kw)
    with torch.no_grad():  # Llama's scale: peaked enough that rounding cannot swap the top two
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
    hf = to_hf(model)
    hf.generation_config.pad_token_id = 0
    engine = Engine(model)
    prompts = torch.randint(0, 97, (4, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs = hf.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                             max_new_tokens=25, min_new_tokens=25)[:, 6:].tolist()
    assert engine.generate_batch(prompts.tolist(), 25) == theirs
    assert [list(engine.generate(p, 25, temperature=0)) for p in prompts.tolist()] == theirs
