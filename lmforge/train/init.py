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
    elif src.exists():
        model = _from_checkpoint(src, rd, manifest)
    else:
        raise LmforgeError(f"train.init_from = {path!r}: no such folder; give a Hugging Face Llama folder "
                           "(with config.json and tokenizer.json) or a run directory / checkpoint")
    vocab = int(manifest["vocab_size"])
    if model.config.vocab_size < vocab:
        raise LmforgeError(f"train.init_from: its vocabulary ({model.config.vocab_size}) is smaller than the "
                           f"run's tokens' ({vocab}); it was not made with this run's tokenizer")
    if seq_len != model.config.seq_len:
        model = _with_seq_len(model, seq_len)
    return model


def _with_seq_len(model, seq_len: int):
    """The same weights with rotary tables for another context length (RoPE has no learned positions)."""
    from lmforge.model.gpt import GPT

    resized = GPT(replace(model.config, seq_len=seq_len))
    resized.load_state_dict(model.state_dict(), strict=True)
    return resized


def _from_hf_folder(src: Path, rd):
    from lmforge.model.gpt import _transformers, from_hf

    tok_json = src / "tokenizer.json"
    if not tok_json.is_file():
        raise LmforgeError(f"train.init_from: {src} has no tokenizer.json, so it cannot be checked against this "
                           "run's tokenizer; copy the model's tokenizer.json beside its config.json")
    _check_same_tokenizer(json.loads(tok_json.read_text(encoding="utf-8")), rd, src)
    transformers = _transformers()
    try:
        hf = transformers.LlamaForCausalLM.from_pretrained(str(src), local_files_only=True, dtype="float32")
    except (OSError, ValueError, KeyError) as e:
        raise LmforgeError(f"train.init_from: {src} is not a loadable LlamaForCausalLM folder ({e})") from None
    try:
        return from_hf(hf)
    except (ValueError, RuntimeError) as e:
        raise LmforgeError(f"train.init_from: {src} has a shape lmforge's GPT cannot express ({e})") from None


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
    from lmforge.model.config import ModelConfig
    from lmforge.model.gpt import GPT
    from lmforge.sample.engine import resolve_checkpoint
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256
    from lmforge.train.checkpoint import load_weights, read_model_json

    step = resolve_checkpoint(src)
    info = read_model_json(step)
    theirs = info.get("tokenizer")
    ours = manifest.get("tokenizer_sha256") or (tokenizer_file_sha256(rd.tokenizer) if rd.tokenizer.is_dir() else None)
    if not theirs or not Path(theirs).is_dir():
        raise LmforgeError(f"train.init_from: {step}'s tokenizer ({theirs}) is gone, so it cannot be checked "
                           "against this run's tokens")
    if ours and tokenizer_file_sha256(theirs) != ours:
        raise LmforgeError(f"train.init_from: {step} was trained with another tokenizer ({theirs}) than this "
                           "run's tokens; its token ids would mean other text")
    model = GPT(ModelConfig(**info["model"]))
    try:
        load_weights(step, model)
    except Exception as e:  # safetensors raises several types for a damaged file
        raise LmforgeError(f"train.init_from: {step}/model.safetensors cannot be read ({e})") from None
    return model
