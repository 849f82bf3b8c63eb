"""Generation: KV cache = no cache, seeds, greedy, top-k, top-p, stop token, loading checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.model.config import ModelConfig
from lmforge.model.gpt import GPT
from lmforge.sample.engine import Engine, filter_logits, load_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, seq_len=40, vocab_size=97)).eval()


def gen(model, **kw):
    args = dict(prompt_ids=[1, 2, 3, 4, 5], max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=0)
    args.update(kw)
    return list(Engine(model).generate(**args))


def test_kv_cache_generation_equals_no_cache_generation(model):
    assert gen(model, temperature=0, use_cache=True) == gen(model, temperature=0, use_cache=False)
    assert gen(model, seed=5, use_cache=True) == gen(model, seed=5, use_cache=False)


def test_generation_past_seq_len_keeps_going(model):
    out = gen(model, max_new_tokens=60, temperature=0)
    assert len(out) == 60 and all(0 <= t < 97 for t in out)
    assert gen(model, max_new_tokens=30, temperature=0, use_cache=False) == out[:30]  # identical until the window fills


def test_same_seed_same_tokens_different_seeds_differ(model):
    assert gen(model, seed=1) == gen(model, seed=1)
    assert len({tuple(gen(model, seed=s)) for s in range(4)}) > 1


def test_temperature_zero_is_greedy_and_deterministic(model):
    out = gen(model, temperature=0, seed=1)
    assert out == gen(model, temperature=0, seed=2)
    ids = [1, 2, 3, 4, 5]
    with torch.no_grad():
        expected = int(model(torch.tensor([ids]))[0][0, -1].argmax())
    assert out[0] == expected


def test_top_k_one_equals_greedy(model):
    assert gen(model, top_k=1, seed=3) == gen(model, temperature=0)


def test_top_p_keeps_the_nucleus_of_a_known_distribution():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(filter_logits(logits, top_p=p)).tolist()  # noqa: E731
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.1) == [True, False, False, False]
    assert kept(1.0) == [True] * 4
    shuffled = logits[[2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.8)).tolist() == [False, True, False, True]
    assert torch.isfinite(filter_logits(logits, top_k=3)).tolist() == [True, True, True, False]


def test_sampling_follows_the_filtered_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    from lmforge.sample.engine import next_token

    draws = [next_token(logits, 1.0, 0, 0.8, g) for _ in range(2000)]
    assert set(draws) == {0, 1}
    assert abs(draws.count(0) / 2000 - 0.625) < 0.04  # 0.5 / (0.5 + 0.3)


def test_stops_before_a_stop_token(model):
    first = gen(model, temperature=0)[0]
    assert list(Engine(model, stop_ids={first}).generate([1, 2, 3, 4, 5], 20, temperature=0)) == []


def test_load_model_from_run_dir_or_step_dir(trained_run):
    rd, tok = trained_run
    model, loaded_tok = load_model(rd.root)
    step_model, _ = load_model(rd.checkpoints / "step_60")
    assert loaded_tok.vocab_size == tok.vocab_size
    for a, b in zip(model.state_dict().values(), step_model.state_dict().values()):
        assert torch.equal(a, b)


def test_load_model_errors_name_the_problem(tmp_path, trained_run):
    with pytest.raises(LmforgeError, match="no such checkpoint"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LmforgeError, match="no complete checkpoint"):
        load_model(tmp_path / "empty")
    broken = tmp_path / "step_5"
    broken.mkdir()
    (broken / "model.json").write_text(json.dumps({"model": {}, "step": 5}))
    with pytest.raises(LmforgeError, match="incomplete checkpoint.*model.safetensors"):
        load_model(broken)


def test_choices_are_the_generated_tokens_with_the_models_probabilities(model):
    engine = Engine(model)
    choices = list(engine.generate_choices([1, 2, 3, 4, 5], 15, temperature=0.9, top_k=20, seed=3))
    assert [c.id for c in choices] == gen(model, max_new_tokens=15, temperature=0.9, top_k=20, seed=3)
    ids = [1, 2, 3, 4, 5]
    for c in choices:  # the reference: a full forward pass over the context so far
        with torch.no_grad():
            probs = model(torch.tensor([ids]))[0][0, -1].softmax(-1)
        assert c.prob == pytest.approx(float(probs[c.id]), abs=1e-5)
        assert [t for t, _ in c.top] == torch.topk(probs, 5).indices.tolist()
        assert all(a >= b for (_, a), (_, b) in zip(c.top, c.top[1:]))
        ids.append(c.id)


def test_a_one_token_context_generates_past_it():
    """The cache refills with the last half window: half of 1 is 0, and ids[-0:] is every id."""
    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT

    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, seq_len=1, vocab_size=20))
    assert gen(model, temperature=0, max_new_tokens=5) == gen(model, temperature=0, max_new_tokens=5, use_cache=False)
