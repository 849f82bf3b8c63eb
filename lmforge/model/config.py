"""Config of the model: a Llama-style decoder. Kept free of torch so loading a config is instant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """``[model]``: shape of the GPT."""

    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 0
    """Key/value heads for grouped-query attention (0 = n_head)."""
    n_embd: int = 256
    seq_len: int = 256
    """Context length in tokens."""
    vocab_size: int = 0
    """0 = take it from the trained tokenizer."""
    rope_theta: float = 10000.0
    mlp_ratio: float = 4.0
    tie_embeddings: bool = True

    def validate(self) -> list[str]:
        problems = []
        if self.n_embd % max(self.n_head, 1) or (self.n_embd // max(self.n_head, 1)) % 2:
            problems.append("n_embd: must divide into n_head heads of even size")
        if self.n_kv_head and self.n_head % self.n_kv_head:
            problems.append("n_kv_head: must divide n_head")
        if min(self.n_layer, self.n_head, self.seq_len) < 1 or self.vocab_size < 0:
            problems.append("n_layer, n_head, seq_len: must be at least 1")
        return problems
