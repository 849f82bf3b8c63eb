"""[train] init_from: a Hugging Face Llama folder or another run's checkpoint; tokenizer checks; round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.errors import LmforgeError
from lmforge.train.dist import DistEnv
from lmforge.train.loop import Trainer, train

from lmf_train_data import tiny_config

TEXT = "The quick brown fox jumps over the lazy dog. " * 40 + "Pack my box with five dozen liquor jugs. " * 40


def token_run_with_tokenizer(root, text=TEXT, vocab=300):
    """A run dir whose tokens were made by a real lmforge tokenizer (so tokenizer checks mean something)."""
    from lmforge.rundir import RunDir
    from lmforge.tokenizer.shards import write_shard
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256
    from lmforge.tokenizer.train import save_tokenizer_dir, train_tokenizer

    rd = RunDir(root)
    tok = train_tokenizer([text], vocab)
    save_tokenizer_dir(tok, rd.tokenizer, hf_export=False)
    ids = np.array([tok.bos_id, *tok.encode(text)] * 3, dtype=np.uint16)
    manifest = {"version": 1, "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "dtype": "uint16",
                "tokenizer_sha256": tokenizer_file_sha256(rd.tokenizer), "sources": {"t": {"train": [], "val": []}}}
    for kind, part in (("train", ids), ("val", ids[:400])):
        rel = f"t/{kind}_000000.bin"
        write_shard(rd.tokens / rel, part, tok.vocab_size)
        manifest["sources"]["t"][kind].append({"path": rel, "tokens": len(part), "documents": 1})
    (rd.tokens / "manifest.json").write_text(json.dumps(manifest))
    return rd, tok


def random_hf_llama(folder, tok, **kw):
    transformers = pytest.importorskip("transformers")
    from lmforge.tokenizer.bpe import hf_tokenizer_json

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{**dict(
        vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False,
        rms_norm_eps=1e-6, rope_theta=10000.0), **kw})
    hf = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)  # non-trivial gains, so a dropped norm weight shows
    hf.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(tok)))
    return hf


def trainer(rd, log=lambda *_: None, **train_kw):
    cfg = tiny_config(rd.root, **train_kw)  # [model]: 2 layers, 32 wide: not the source's shape
    return Trainer(cfg, rd, DistEnv(device="cpu"), log)


def test_init_from_a_hf_llama_and_export_again_gives_identical_weights(tmp_path):
    from safetensors.torch import load_file

    from lmforge.model.gpt import to_hf

    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    source = tmp_path / "llama"
    hf = random_hf_llama(source, tok)
    lines = []
    t = trainer(rd, lines.append, init_from=str(source))
    assert t.model.config.n_embd == 64 and t.model.config.n_kv_head == 2 and not t.model.config.tie_embeddings
    assert any("starting from" in line and "model shape from it" in line for line in lines)
    again = tmp_path / "again"
    to_hf(t.model).save_pretrained(again)
    a, b = load_file(str(source / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    idx = torch.randint(0, tok.vocab_size, (1, 32))
    with torch.no_grad():
        torch.testing.assert_close(t.model(idx)[0], hf(idx).logits, atol=1e-4, rtol=1e-4)


def test_init_from_refuses_a_model_of_another_tokenizer(tmp_path):
    from lmforge.tokenizer.bpe import hf_tokenizer_json
    from lmforge.tokenizer.train import train_tokenizer

    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    source = tmp_path / "llama"
    random_hf_llama(source, tok)
    other = train_tokenizer(["Completely different words for another vocabulary entirely. " * 50], 300)
    (source / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(other)))
    with pytest.raises(LmforgeError, match="tokenizer of .* differs from this run's"):
        trainer(rd, init_from=str(source))
    (source / "tokenizer.json").unlink()
    with pytest.raises(LmforgeError, match="has no tokenizer.json"):
        trainer(rd, init_from=str(source))
    with pytest.raises(LmforgeError, match="no such folder"):
        trainer(rd, init_from=str(tmp_path / "nowhere"))


def test_init_from_another_runs_checkpoint_then_resume_keeps_its_shape(tmp_path):
    from lmforge.train.checkpoint import latest_checkpoint
    from safetensors.torch import load_file

    first, _ = token_run_with_tokenizer(tmp_path / "first")
    cfg = tiny_config(first.root, max_steps=2)
    cfg.model.n_embd = 48
    train(cfg, first, log=lambda *_: None)
    second, _ = token_run_with_tokenizer(tmp_path / "second")  # the same text: the same tokenizer file
    t = trainer(second, init_from=str(first.root))
    assert t.model.config.n_embd == 48
    saved = load_file(str(latest_checkpoint(first.checkpoints) / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in t.model.state_dict().items() if k in saved)
    train(tiny_config(second.root, max_steps=2, init_from=str(first.root)), second, log=lambda *_: None)
    train(tiny_config(second.root, max_steps=4, init_from=str(first.root)), second, log=lambda *_: None)  # resumes
    assert latest_checkpoint(second.checkpoints).name == "step_4"


def test_init_from_a_checkpoint_of_another_tokenizer_is_refused(tmp_path):
    first, _ = token_run_with_tokenizer(tmp_path / "first")
    train(tiny_config(first.root, max_steps=1), first, log=lambda *_: None)
    second, _ = token_run_with_tokenizer(tmp_path / "second", text="Other text entirely, other merges. " * 80)
    with pytest.raises(LmforgeError, match="another tokenizer"):
        trainer(second, init_from=str(first.root))


LLAMAS_LMFORGE_CANNOT_EXPRESS = {
    "gelu MLP": (dict(hidden_act="gelu"), "hidden_act = 'gelu'"),
    "attention biases": (dict(attention_bias=True), "attention_bias = true"),
    "MLP biases": (dict(mlp_bias=True), "mlp_bias = true"),
    "its own head_dim": (dict(head_dim=8), "head_dim = 8"),
    "scaled RoPE": (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "of type 'linear'"),
}


@pytest.mark.parametrize("case", LLAMAS_LMFORGE_CANNOT_EXPRESS)
def test_init_from_refuses_a_llama_whose_options_lmforge_cannot_express(tmp_path, case):
    """Loaded anyway, such a model would be another function than its weights were trained for."""
    options, named = LLAMAS_LMFORGE_CANNOT_EXPRESS[case]
    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    random_hf_llama(tmp_path / "llama", tok, **options)
    with pytest.raises(LmforgeError, match=f"{named}.*cannot express"):
        trainer(rd, init_from=str(tmp_path / "llama"))


def test_init_from_refuses_a_folder_that_is_not_a_llama(tmp_path):
    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    source = tmp_path / "llama"
    random_hf_llama(source, tok)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(LmforgeError, match="model_type = 'gpt2' \\(not llama\\)"):
        trainer(rd, init_from=str(source))
    (source / "config.json").write_text("{not json")
    with pytest.raises(LmforgeError, match="config.json is not readable JSON"):
        trainer(rd, init_from=str(source))
    with pytest.raises(LmforgeError, match="a file, not a folder"):
        trainer(rd, init_from=str(source / "config.json"))


def test_init_from_never_loads_pickle_weights(tmp_path):
    """A pytorch_model.bin is a pickle: loading it may run code, so it is refused, not loaded."""
    import os
    import pickle

    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    source = tmp_path / "llama"
    random_hf_llama(source, tok)
    (source / "model.safetensors").unlink()
    ran = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return os.mkdir, (str(ran),)

    (source / "pytorch_model.bin").write_bytes(pickle.dumps({"model.embed_tokens.weight": RunsCode()}))
    with pytest.raises(LmforgeError, match="only pytorch_model.bin, pickle.*safetensors only"):
        trainer(rd, init_from=str(source))
    assert not ran.exists()


@pytest.mark.parametrize("damage", ["truncated", "NaN"])
def test_init_from_a_damaged_hf_folder_is_one_clear_error(tmp_path, damage):
    from safetensors.torch import load_file, save_file

    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    source = tmp_path / "llama"
    random_hf_llama(source, tok)
    weights = source / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
        match = "is not a loadable LlamaForCausalLM folder"
    else:
        state = load_file(str(weights))
        state["model.norm.weight"][0] = float("nan")
        save_file(state, str(weights), metadata={"format": "pt"})
        match = "non-finite weights .* in norm.weight"
    with pytest.raises(LmforgeError, match=match):
        trainer(rd, init_from=str(source))


def test_init_from_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    """The checks `lmforge sample` makes on a checkpoint: model.json, the weights' shapes, a whole file."""
    from lmforge.train.checkpoint import latest_checkpoint

    first, _ = token_run_with_tokenizer(tmp_path / "first")
    train(tiny_config(first.root, max_steps=1), first, log=lambda *_: None)
    second, _ = token_run_with_tokenizer(tmp_path / "second")
    step = latest_checkpoint(first.checkpoints)
    info = json.loads((step / "model.json").read_text())
    (step / "model.json").write_text(json.dumps({**info, "model": {**info["model"], "n_layr": 2}}))
    with pytest.raises(LmforgeError, match="init_from: .*model.json: not a model this code can build .*n_layr"):
        trainer(second, init_from=str(step))
    (step / "model.json").write_text(json.dumps(info))
    weights = step / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(LmforgeError, match="init_from: .*model.safetensors: not a readable safetensors file"):
        trainer(second, init_from=str(step))


def test_a_training_stopped_by_a_non_finite_loss_continues_from_its_last_good_checkpoint_as_told(
        tmp_path, monkeypatch, capsys):
    """A rerun with a lower lr is a new training that removes the old checkpoints: the message says
    to copy the good one out and start from it with init_from, and doing so works."""
    import shutil

    from lmforge.pipeline import run_stages
    from lmforge.train import optim
    from lmforge.train.checkpoint import latest_checkpoint

    rd, _ = token_run_with_tokenizer(tmp_path / "run")
    schedule = optim.lr_factor
    monkeypatch.setattr(optim, "lr_factor", lambda step, tc: 1e30 if step >= 4 else schedule(step, tc))
    with pytest.raises(LmforgeError, match=r"step 6: .* not finite; lower train.lr .*last good checkpoint is "
                                           r".*step_4; .*copy it out of .*train.init_from"):
        run_stages(tiny_config(rd.root, max_steps=8, checkpoint_every=2), only=["train"], log=lambda *_: None)
    monkeypatch.undo()
    good = tmp_path / "good"
    shutil.copytree(latest_checkpoint(rd.checkpoints), good)
    capsys.readouterr()
    run_stages(tiny_config(rd.root, max_steps=8, lr=5e-3, init_from=str(good)), only=["train"], log=lambda *_: None)
    assert f"[train] starting from {good}" in capsys.readouterr().out
    assert rd.is_complete("train") and latest_checkpoint(rd.checkpoints).name == "step_8"


def test_init_from_inside_the_run_itself_is_refused_before_its_checkpoints_are_removed(tmp_path):
    from lmforge.pipeline import run_stages
    from lmforge.train.checkpoint import latest_checkpoint

    rd, _ = token_run_with_tokenizer(tmp_path / "run")
    run_stages(tiny_config(rd.root, max_steps=2), only=["train"], log=lambda *_: None)
    own = latest_checkpoint(rd.checkpoints)
    with pytest.raises(LmforgeError, match="is inside this run .* copy it out of the run first"):
        run_stages(tiny_config(rd.root, max_steps=2, lr=5e-3, init_from=str(own)), only=["train"],
                   log=lambda *_: None)
    assert latest_checkpoint(rd.checkpoints) == own and rd.is_complete("train")


def test_init_from_under_home_is_fingerprinted_by_its_files(tmp_path, monkeypatch):
    """init_from = "~/..." is read with ~ expanded; its files must count in the fingerprint the same way."""
    from lmforge.pipeline import expected_record

    rd, tok = token_run_with_tokenizer(tmp_path / "run")
    random_hf_llama(tmp_path / "home" / "llama", tok)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inputs = expected_record("train", tiny_config(rd.root, init_from="~/llama"), rd)["inputs"]
    assert {Path(p).name for p, *_ in inputs} >= {"config.json", "model.safetensors", "tokenizer.json"}
