"""``[train] init_from``: start training from existing weights (continued pretraining).

PATH is either a Hugging Face Llama folder (what ``lmforge export-hf`` writes, or any local
``LlamaForCausalLM`` of a shape lmforge expresses, with its ``tokenizer.json``) or another run's
checkpoint (a run directory, its ``checkpoints/`` or a ``step_N`` folder). The model's shape comes
from PATH; only the training context ``seq_len`` comes from ``[model]``. The token ids of this run
must mean the same text to the model, so PATH's tokenizer must be the run's: otherwise refused.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from lmforge.errors import LmforgeError


def load_initial_model(path: str, rd, manifest: dict, seq_len: int):
    """(GPT on the CPU, what it was loaded from) for ``init_from = path``; raises LmforgeError on a mismatch."""
    src = Path(path).expanduser()
    if (src / "config.json").is_file():
        model = _from_hf_folder(src, rd)
    elif src.is_dir():
        model = _from_checkpoint(src, rd, manifest)
    else:
        what = "a file, not a folder" if src.exists() else "no such folder"
        raise LmforgeError(f"train.init_from = {path!r}: {what}; give a Hugging Face Llama folder "
                           "(with config.json and tokenizer.json) or a run directory / checkpoint")
    vocab = int(manifest["vocab_size"])
    if model.config.vocab_size < vocab:
        raise LmforgeError(f"train.init_from: its vocabulary ({model.config.vocab_size}) is smaller than the "
                           f"run's tokens' ({vocab}); it was not made with this run's tokenizer")
    _check_finite(model, src)
    if seq_len != model.config.seq_len:
        model = _with_seq_len(model, seq_len)
    return model.train()


def _check_finite(model, src: Path) -> None:
    """NaN or infinite weights would stop training at its first step with a message blaming the lr."""
    import torch

    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise LmforgeError(f"train.init_from: {src} holds non-finite weights (NaN or inf) in {', '.join(bad[:3])}"
                           f"{' ...' if len(bad) > 3 else ''}; start from an earlier checkpoint of that model")


def check_outside_run(init_from: str, rd) -> None:
    """Refuse weights to start from inside the run itself: a fresh start removes its checkpoints."""
    if not init_from:
        return
    src, root = Path(init_from).expanduser().resolve(), Path(rd.root).resolve()
    if src == root or root in src.parents:
        raise LmforgeError(f"train.init_from = {init_from!r} is inside this run ({rd.root}), whose checkpoints a "
                           "fresh start removes; copy it out of the run first (cp -r) and set init_from to the copy")


def _with_seq_len(model, seq_len: int):
    """The same weights with rotary tables for another context length (RoPE has no learned positions)."""
    from lmforge.model.gpt import GPT

    resized = GPT(replace(model.config, seq_len=seq_len))
    resized.load_state_dict(model.state_dict(), strict=True)
    return resized


def _from_hf_folder(src: Path, rd):
    from lmforge.model.gpt import _transformers, from_hf

    config = _read_json(src / "config.json")
    unsupported = hf_unsupported(config)
    if unsupported:
        raise LmforgeError(f"train.init_from: {src} uses {'; '.join(unsupported)}, which lmforge's GPT cannot "
                           "express; start from a plain Llama (SiLU MLP, no biases, default RoPE) "
                           "or train from scratch")
    _check_safetensors_weights(src)
    tok_json = src / "tokenizer.json"
    if not tok_json.is_file():
        raise LmforgeError(f"train.init_from: {src} has no tokenizer.json, so it cannot be checked against this "
                           "run's tokenizer; copy the model's tokenizer.json beside its config.json")
    _check_same_tokenizer(_read_json(tok_json), rd, src)
    transformers = _transformers()
    try:  # use_safetensors: never fall back to a pickle (.bin), whose loading can run code
        hf = transformers.LlamaForCausalLM.from_pretrained(str(src), local_files_only=True, dtype="float32",
                                                           use_safetensors=True)
    except Exception as e:  # noqa: BLE001 - safetensors and transformers raise many types for a damaged folder
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LmforgeError(f"train.init_from: {src} is not a loadable LlamaForCausalLM folder ({first})") from None
    try:
        return from_hf(hf)
    except (ValueError, RuntimeError) as e:
        raise LmforgeError(f"train.init_from: {src} has a shape lmforge's GPT cannot express ({e})") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise LmforgeError(f"train.init_from: {path} is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise LmforgeError(f"train.init_from: {path} is not a JSON object")
    return data


def hf_unsupported(config: dict) -> list[str]:
    """What a Hugging Face config.json sets that lmforge's GPT would silently compute otherwise.

    >>> hf_unsupported({"model_type": "llama", "hidden_act": "gelu", "attention_bias": True})
    ["hidden_act = 'gelu' (lmforge's MLP is SwiGLU, silu)", 'attention_bias = true']
    """
    out = []
    if config.get("model_type") != "llama":
        out.append(f"model_type = {config.get('model_type')!r} (not llama)")
    if config.get("hidden_act", "silu") not in ("silu", "swish"):
        out.append(f"hidden_act = {config.get('hidden_act')!r} (lmforge's MLP is SwiGLU, silu)")
    out += [f"{key} = true" for key in ("attention_bias", "mlp_bias") if config.get(key)]
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    head_dim = config.get("head_dim")
    if head_dim and isinstance(hidden, int) and isinstance(heads, int) and heads and head_dim * heads != hidden:
        out.append(f"head_dim = {head_dim} (lmforge's is hidden_size / num_attention_heads = {hidden // heads})")
    for key in ("rope_scaling", "rope_parameters"):
        rope = config.get(key) or {}
        kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else rope
        if kind != "default":
            out.append(f"{key} of type {kind!r} (lmforge's RoPE has no scaling)")
            break  # transformers writes the same scaling under both names
    return out


def _check_safetensors_weights(src: Path) -> None:
    if (src / "model.safetensors").is_file() or (src / "model.safetensors.index.json").is_file():
        return
    pickles = sorted(p.name for p in src.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    found = f"only {', '.join(pickles[:3])}, pickle files whose loading can run code" if pickles else "no weights"
    raise LmforgeError(f"train.init_from: {src} has {found}; lmforge loads safetensors only: convert it where you "
                       "trust the file (transformers: from_pretrained(...).save_pretrained(folder)) and point "
                       "init_from at that folder")


def _check_same_tokenizer(theirs: dict, rd, src: Path) -> None:
    """Same vocabulary, merges and special tokens as the run's tokenizer (its Hugging Face form)."""
    from lmforge.tokenizer.bpe import Tokenizer, hf_tokenizer_json

    ours = hf_tokenizer_json(Tokenizer.load(rd.tokenizer))

    def key(t: dict):
        model = t.get("model", {})
        merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges", [])]
        added = sorted((a["id"], a["content"]) for a in t.get("added_tokens", []))
        return model.get("vocab"), merges, added, json.dumps(t.get("pre_tokenizer"), sort_keys=True)

    if key(theirs) != key(ours):
        raise LmforgeError(f"train.init_from: the tokenizer of {src} differs from this run's ({rd.tokenizer}); "
                           "its token ids would mean other text. Tokenize with that tokenizer "
                           "(or start from a model trained with this run's)")


def _from_checkpoint(src: Path, rd, manifest: dict):
    from lmforge.sample.engine import load_model, resolve_checkpoint
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256

    try:
        step = resolve_checkpoint(src)
        # the checks of `lmforge sample`: model.json, the weights' shapes, a whole file, finite values
        model, _ = load_model(step, with_tokenizer=False)
    except LmforgeError as e:
        raise LmforgeError(f"train.init_from: {e}") from None
    theirs = _read_json(step / "model.json").get("tokenizer")
    ours = manifest.get("tokenizer_sha256") or (tokenizer_file_sha256(rd.tokenizer) if rd.tokenizer.is_dir() else None)
    if not isinstance(theirs, str) or not Path(theirs).is_dir():
        raise LmforgeError(f"train.init_from: {step}'s tokenizer ({theirs}) is gone, so it cannot be checked "
                           "against this run's tokens")
    if ours and tokenizer_file_sha256(theirs) != ours:
        raise LmforgeError(f"train.init_from: {step} was trained with another tokenizer ({theirs}) than this "
                           "run's tokens; its token ids would mean other text")
    return model
