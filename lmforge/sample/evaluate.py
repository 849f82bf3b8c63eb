"""How good is a checkpoint: loss and bits per byte on held-out tokens or a text file, and a
few-shot in-context learning probe.

Bits per byte (nats / ln 2 / UTF-8 bytes) compares models whose tokenizers differ, since it does
not depend on how many tokens the text became (as in nanochat's and the Pile's evaluations).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import LmforgeError


@torch.no_grad()
def token_losses(model, windows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses (nats) and their targets, over batches of (x, y)."""
    device = next(model.parameters()).device
    losses, targets = [], []
    for x, y in windows:
        x, y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").cpu())
        targets.append(y.flatten().cpu())
    return torch.cat(losses), torch.cat(targets)


def summarize(losses: torch.Tensor, targets: torch.Tensor, tokenizer, bos_id: int | None) -> dict:
    """Mean loss, and bits per byte of the non-special targets when a tokenizer gives their bytes."""
    out = {"loss": float(losses.mean()), "tokens": int(losses.numel())}
    if tokenizer is not None:
        keep = targets != bos_id if bos_id is not None else torch.ones_like(targets, dtype=torch.bool)
        nbytes = len(_bytes(tokenizer, targets[keep].tolist()))
        if nbytes:
            out["bpb"] = float(losses[keep].sum()) / math.log(2) / nbytes
    return out


def _bytes(tokenizer, ids: list[int]) -> bytes:
    if hasattr(tokenizer, "decode_bytes"):
        return tokenizer.decode_bytes(ids)
    return tokenizer.decode(ids).encode("utf-8")


def evaluate_val(model, tokenizer, run_dir: Path, batch_size: int = 8, max_batches: int = 50,
                 tokenizer_dir: Path | None = None) -> dict:
    """Loss and bits per byte on the run's val shards (the same windows the trainer validates on).

    The shards must have been made by the checkpoint's tokenizer (``tokenizer_dir``, when given):
    with another one the same ids mean other text and the loss would mean nothing.
    """
    from lmforge.tokenizer.tokenize import tokenizer_file_sha256
    from lmforge.train.data import load_manifest, val_batches

    tokens = Path(run_dir) / "tokens"
    if not (tokens / "manifest.json").is_file():
        raise LmforgeError(f"{tokens}: no token shards to evaluate on (a checkpoint outside its run?); "
                           "evaluate a text file with --text FILE")
    manifest = load_manifest(tokens)
    made_by = manifest.get("tokenizer_sha256")
    if made_by and tokenizer_dir is not None and made_by != tokenizer_file_sha256(tokenizer_dir):
        raise LmforgeError(f"{tokens} was made by another tokenizer than the checkpoint's ({tokenizer_dir}); "
                           "its loss there would mean nothing: evaluate a text file with --text FILE")
    if int(manifest["vocab_size"]) > model.config.vocab_size:
        raise LmforgeError(f"{tokens} holds token ids up to {int(manifest['vocab_size']) - 1}, beyond the model's "
                           f"vocabulary of {model.config.vocab_size}: another tokenizer made them; evaluate a text "
                           "file with --text FILE")
    batches = val_batches(tokens, manifest, model.config.seq_len, batch_size, max_batches)
    if not batches:
        raise LmforgeError(f"{tokens}: no val shards with at least seq_len + 1 tokens; "
                           "evaluate a text file with --text")
    return summarize(*token_losses(model, batches), tokenizer, manifest.get("bos_id"))


def evaluate_text(model, tokenizer, text: str, batch_size: int = 8) -> dict:
    """Loss and bits per byte of ``text``: BOS + its tokens, cut into windows of seq_len (+1)."""
    ids = np.array([tokenizer.bos_id, *tokenizer.encode(text)], dtype=np.int64)
    seq_len = model.config.seq_len
    if len(ids) < 2:
        raise LmforgeError("the text is empty; give a file with some text")
    rows = [ids[i:i + seq_len + 1] for i in range(0, len(ids) - 1, seq_len)]
    batches = [(r[None, :-1], r[None, 1:]) for r in rows]  # last window may be short: one row per batch
    return summarize(*token_losses(model, batches), tokenizer, tokenizer.bos_id)


# ---------------------------------------------------------------- few-shot probe

WORDS = ("list", "dict", "class", "return", "value", "string", "module", "import", "file", "object",
         "function", "number", "python", "method", "error", "type", "index", "data", "name", "example",
         "print", "tuple", "thread", "socket", "path", "format", "random", "buffer", "stream", "parser")

TASKS = {
    # An induction-style copy: the answer is in the prompt only if the examples taught the format.
    "copy": lambda w: w,
    # A transformation the model must infer from the examples.
    "upper": lambda w: w.upper(),
}


def max_shots() -> int:
    """The most examples a prompt can hold: every word but the query's."""
    return len(WORDS) - 1


def few_shot_prompts(task: str, shots: int, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: ``shots`` lines "word -> answer", then "query ->"."""
    if not 0 <= shots <= max_shots():
        raise LmforgeError(f"shots = {shots}: give 0 to {max_shots()} examples")
    rng = random.Random(seed)
    fn, pairs = TASKS[task], []
    for _ in range(count):
        words = rng.sample(WORDS, shots + 1)
        lines = [f"{w} -> {fn(w)}\n" for w in words[:shots]]
        pairs.append(("".join(lines) + f"{words[-1]} ->", fn(words[-1])))
    return pairs


def few_shot_accuracy(model, tokenizer, task: str = "copy", shots: int = 3, count: int = 20, seed: int = 0) -> float:
    """Share of queries whose greedy continuation's first line is exactly the answer."""
    from lmforge.sample.engine import Engine

    engine = Engine(model, stop_ids={tokenizer.bos_id})
    right = 0
    for prompt, answer in few_shot_prompts(task, shots, count, seed):
        ids = [tokenizer.bos_id, *tokenizer.encode(prompt)]
        budget = len(tokenizer.encode(" " + answer)) + 2
        out = tokenizer.decode(list(engine.generate(ids, budget, temperature=0)))
        right += out.split("\n")[0].strip() == answer
    return right / count


@torch.no_grad()
def few_shot_answer_nats(model, tokenizer, task: str = "copy", shots: int = 3, count: int = 20, seed: int = 0) -> float:
    """Mean loss (nats per token) of the right answer after the prompt.

    Finer than accuracy: a small model that does not yet write the answer may still find it more
    likely with examples in the prompt than without, the signature of in-context learning
    (Olsson et al. 2022, "In-context learning and induction heads").
    """
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for prompt, answer in few_shot_prompts(task, shots, count, seed):
        head = [tokenizer.bos_id, *tokenizer.encode(prompt)]
        full = [tokenizer.bos_id, *tokenizer.encode(f"{prompt} {answer}\n")]
        if full[:len(head)] != head or len(full) > model.config.seq_len + 1:
            continue  # the answer merged into the prompt's last token: no clean boundary to score
        logits, _ = model(torch.tensor([full[:-1]], device=device))
        nats = F.cross_entropy(logits[0].float(), torch.tensor(full[1:], device=device), reduction="none")
        total += float(nats[len(head) - 1:].sum())
        tokens += len(full) - len(head)
    return total / tokens if tokens else float("nan")


def few_shot_report(model, tokenizer, shots: int = 3, count: int = 20, seed: int = 0) -> dict:
    """Per task, with 0 and with ``shots`` examples: exact-answer accuracy and the answer's loss."""
    report = {}
    for task in TASKS:
        report[task] = {}
        for k in (0, shots):
            report[task][f"{k}-shot"] = few_shot_accuracy(model, tokenizer, task, k, count, seed)
            nats = few_shot_answer_nats(model, tokenizer, task, k, count, seed)
            # None (JSON null, not NaN) when no prompt fits in seq_len with its answer
            report[task][f"{k}-shot_answer_nats"] = round(nats, 4) if math.isfinite(nats) else None
    return report
