"""How well a tokenizer compresses held-out text: bytes per token overall and per language, its
longest tokens, and how many vocabulary entries the text never uses (merges wasted on the
training corpus's quirks)."""

from __future__ import annotations

import collections
from pathlib import Path

from lmforge.tokenizer.corpus import batch_keys, iter_batches
from lmforge.tokenizer.tokenize import is_val, plan_split


def tokenizer_stats(tokenizer, files: list[Path], seed: int, val_fraction: float, split: str = "val",
                    longest: int = 10) -> dict:
    """Encode the ``split`` documents ("val": the held-out ones, as the tokenize stage splits
    them; "all": every document) and count bytes and tokens per language."""
    _, forced = plan_split(files, seed, val_fraction)
    per_lang: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # docs, bytes, tokens
    used: set[int] = set()
    for batch in iter_batches(files, ["id", "url", "text", "language"]):
        for key, text, lang in zip(batch_keys(batch), batch["text"], batch["language"]):
            if split == "val" and not is_val(key, seed, val_fraction, forced):
                continue
            ids = tokenizer.encode(text or "")
            used.update(ids)
            entry = per_lang[lang or "unknown"]
            entry[0] += 1
            entry[1] += len((text or "").encode("utf-8", "surrogatepass"))
            entry[2] += len(ids)
    docs, nbytes, ntokens = (sum(v[k] for v in per_lang.values()) for k in range(3))
    return {
        "split": split,
        "documents": docs,
        "bytes": nbytes,
        "tokens": ntokens,
        "bytes_per_token": round(nbytes / ntokens, 4) if ntokens else None,
        "languages": {lang: {"documents": d, "bytes": b, "tokens": t, "bytes_per_token": round(b / t, 4) if t else None}
                      for lang, (d, b, t) in sorted(per_lang.items(), key=lambda kv: -kv[1][1])},
        "vocab_size": tokenizer.vocab_size,
        # Learned tokens only: single bytes such as 0xFF can never occur in UTF-8 text.
        "merges": len(tokenizer.mergeable_ranks) - 256,
        "unused_merges": sum(1 for i in range(256, len(tokenizer.mergeable_ranks)) if i not in used),
        "longest_tokens": _longest(tokenizer, longest),
    }


def _longest(tokenizer, n: int) -> list[dict]:
    ranked = sorted(tokenizer.mergeable_ranks.items(), key=lambda kv: (-len(kv[0]), kv[1]))[:n]
    return [{"id": i, "bytes": len(b), "text": b.decode("utf-8", errors="replace")} for b, i in ranked]


def format_stats(st: dict) -> str:
    lines = [f"{st['split']} documents: {st['documents']}, {st['bytes']:,} bytes, {st['tokens']:,} tokens, "
             f"{st['bytes_per_token']} bytes/token"]
    for lang, e in st["languages"].items():
        lines.append(f"  {lang:>8}: {e['documents']} docs, {e['bytes_per_token']} bytes/token")
    lines.append(f"learned tokens never used by these documents: {st['unused_merges']} of {st['merges']}")
    lines.append("longest tokens: " + ", ".join(f"{t['id']}:{t['text']!r}" for t in st["longest_tokens"]))
    return "\n".join(lines)
