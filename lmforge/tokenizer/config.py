"""Config of the tokenizer and tokenize stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class TokenizerConfig:
    """``[tokenizer]``: byte-level BPE training and token shards."""

    # Settings that change how fast, not what: outside the stage fingerprint (lmforge/fingerprint.py).
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"workers"})

    vocab_size: int = 4096
    """Total vocabulary, the 256 byte tokens and the special tokens included."""
    pattern: str = "gpt4"
    """Pre-tokenization split: gpt2, gpt4 (cl100k-style), o200k, or a regex."""
    split_digits: bool = False
    """Split numbers into single digits (as Llama does) instead of the pattern's digit groups."""
    special_tokens: list[str] = field(default_factory=lambda: ["<|endoftext|>"])
    """The first one separates (and begins) documents in the token shards."""
    max_train_bytes: int = 0
    """Train on at most this many bytes of text, sampled deterministically (0 = all)."""
    val_fraction: float = 0.05
    """Share of documents held out for validation (split by document, seeded)."""
    shard_tokens: int = 100_000_000
    """Tokens per shard file."""
    workers: int = 1
    """Processes for encoding (0 = one per CPU)."""
    hf_export: bool = True
    """Also write ``tokenizer/hf/tokenizer.json`` for transformers.PreTrainedTokenizerFast."""

    def validate(self) -> list[str]:
        problems = []
        if not 256 + len(self.special_tokens) <= self.vocab_size <= 2**17:
            problems.append(f"vocab_size: must be between 256 + specials and 131072, got {self.vocab_size}")
        if not self.special_tokens:
            problems.append("special_tokens: needs at least one (the document separator)")
        if not 0 <= self.val_fraction < 1:
            problems.append("val_fraction: must be in [0, 1)")
        if self.shard_tokens < 1:
            problems.append("shard_tokens: must be at least 1")
        if self.max_train_bytes < 0:
            problems.append("max_train_bytes: must be 0 (all) or a positive byte count")
        if self.workers < 0:
            problems.append("workers: must be 0 (one per CPU) or a positive count")
        if len(set(self.special_tokens)) != len(self.special_tokens) or not all(self.special_tokens):
            problems.append("special_tokens: must be distinct non-empty strings")
        problems.extend(_pattern_problems(self.pattern, self.split_digits))
        return problems


def _pattern_problems(pattern: str, split_digits: bool) -> list[str]:
    from lmforge.errors import LmforgeError
    from lmforge.tokenizer.bpe import resolve_pattern

    try:
        resolve_pattern(pattern, split_digits)
    except LmforgeError as exc:
        return [f"pattern: {exc}"]
    return []
