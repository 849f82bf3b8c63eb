"""Config of the model: a Llama-style decoder. Kept free of torch so loading a config is instant."""

from __future__ import annotations

from dataclasses import dataclass

MLP_KINDS = ("swiglu", "relu2")


@dataclass
class ModelConfig:
    """``[model]``: shape of the GPT, and the options beyond Llama's layout (all off = a plain Llama)."""

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
    """false = an untied output head (its own matrix)."""
    mlp: str = "swiglu"
    """swiglu (Llama) or relu2: down(relu(up(x))^2) (So et al. 2021, "Primer"; modded-nanogpt)."""
    qk_norm: bool = False
    """RMSNorm of queries and keys per head before attention (Dehghani et al. 2023; modded-nanogpt)."""
    zero_init_proj: bool = False
    """Attention and MLP output projections start at zero, so every block starts as the identity."""
    logit_softcap: float = 0.0
    """Logits become cap * tanh(logits / cap) (Gemma 2; modded-nanogpt uses 15-30); 0 = off."""

    def validate(self) -> list[str]:
        problems = []
        for name in ("n_layer", "n_head", "n_embd", "seq_len"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1 (it is {getattr(self, name)})")
        if self.n_embd >= 1 and self.n_head >= 1 and (self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2):
            problems.append(f"n_embd: {self.n_embd} must divide into n_head = {self.n_head} heads of even size "
                            "(e.g. n_embd a multiple of 2 * n_head)")
        if self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head):
            problems.append(f"n_kv_head: {self.n_kv_head} must be 0 (= n_head) or divide n_head = {self.n_head}")
        if self.vocab_size < 0:
            problems.append("vocab_size: must be >= 0 (0 = the tokenizer's)")
        if self.rope_theta <= 0 or self.mlp_ratio <= 0:
            problems.append("rope_theta, mlp_ratio: must be > 0")
        elif self.n_embd >= 1 and self.mlp_ratio * self.n_embd * (2 / 3 if self.mlp == "swiglu" else 1) < 1:
            problems.append(f"mlp_ratio: {self.mlp_ratio} leaves the MLP of n_embd = {self.n_embd} no width; "
                            "raise it (Llama: 4)")
        if self.mlp not in MLP_KINDS:
            problems.append(f"mlp: {self.mlp!r} is not one of {', '.join(MLP_KINDS)}")
        if self.logit_softcap < 0:
            problems.append("logit_softcap: must be >= 0 (0 = off)")
        return problems

    def non_llama_options(self) -> list[str]:
        """Settings a Hugging Face LlamaForCausalLM cannot express (zero_init_proj only changes the start)."""
        out = []
        if self.mlp != "swiglu":
            out.append(f'mlp = "{self.mlp}"')
        if self.qk_norm:
            out.append("qk_norm = true")
        if self.logit_softcap:
            out.append(f"logit_softcap = {self.logit_softcap}")
        return out
