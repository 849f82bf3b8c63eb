"""A small Llama-style decoder, readable top to bottom (in the spirit of nanoGPT and nanochat).

token embedding -> n_layer x [RMSNorm -> attention (RoPE, grouped-query) -> + ; RMSNorm -> SwiGLU MLP -> +]
-> RMSNorm -> lm_head. No biases anywhere (as in Llama and PaLM).

Options of ``[model]`` from the small-model speedruns (modded-nanogpt, nanochat), each off by default
unless the recipe bench showed it helps: QK-norm, a ReLU² MLP, an untied head, zero-initialised
output projections, logit soft-capping. With all off the model is exactly a Llama.

Module names follow Hugging Face's ``LlamaForCausalLM`` so the weights export and import by name
(:func:`to_hf`, :func:`from_hf`), and RoPE uses HF's "rotate half" layout (the two halves of a head
are the real and imaginary parts), so no permutation is needed either way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.model.config import ModelConfig

RMS_EPS = 1e-6  # HF LlamaConfig's default rms_norm_eps, so exported models match without a setting


def mlp_hidden_size(cfg: ModelConfig) -> int:
    """MLP width: for SwiGLU 2/3 of mlp_ratio * n_embd, for ReLU² mlp_ratio * n_embd; rounded up to 32.

    SwiGLU has three matrices instead of two; the 2/3 keeps the parameter count of a GELU MLP of
    width mlp_ratio * n_embd (Shazeer 2020, "GLU Variants Improve Transformer", which also finds it
    gives a lower perplexity at equal size; Llama does the same).
    """
    hidden = int(cfg.mlp_ratio * cfg.n_embd * (2 / 3 if cfg.mlp == "swiglu" else 1))
    return (hidden + 31) // 32 * 32


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (length, head_dim // 2): one frequency per pair (x_i, x_{i + head_dim/2})."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) by position, HF's rotate-half layout: (a, b) -> (a cos - b sin, b cos + a sin).

    The same as HF's ``x * cos + rotate_half(x) * sin`` with its tables repeated over both halves,
    in half the elementwise traffic (no negated copy, no full-width products).
    """
    a, b = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, no mean subtraction (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Computed in float32 like HF's LlamaRMSNorm, so bf16 training stays stable.
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), RMS_EPS).to(x.dtype)


class KVCache:
    """Keys and values of every layer for one batch of sequences, preallocated to ``max_len``."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype=torch.float32):
        head_dim = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, batch, cfg.n_kv_head or cfg.n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v of positions start.. and return all keys/values up to the last of them."""
        end = start + k.size(2)
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_head = layer, cfg.n_head
        self.n_kv_head = cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.q_proj = nn.Linear(cfg.n_embd, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, cfg.n_embd, bias=False)
        if cfg.qk_norm:  # the names of HF's Qwen3 attention, which has the same norms
            self.q_norm, self.k_norm = RMSNorm(self.head_dim), RMSNorm(self.head_dim)
        self.qk_norm = cfg.qk_norm

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, start_pos: int = 0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, start_pos, k, v)
        if self.n_kv_head != self.n_head:
            # Grouped-query attention (Ainslie et al. 2023): query head h reads kv head h // repeat,
            # the same grouping as HF's repeat_kv.
            repeat = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        if start_pos == 0 or T == 1:
            # Plain causal mask (prefill from 0), or one new token that may see everything cached.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        else:
            # T new tokens after start_pos cached ones: token i sees keys 0 .. start_pos + i.
            mask = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(diagonal=start_pos)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class _ReLUSquared(torch.autograd.Function):
    """relu(x)² with a two-pass backward (2 relu(x) * grad) instead of autograd's four (pow, mul, mul, mask)."""

    @staticmethod
    def forward(ctx, x):
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)); or ReLU²: down(relu(up(x))^2), two matrices, no gate."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = mlp_hidden_size(cfg)
        self.relu2 = cfg.mlp == "relu2"
        if not self.relu2:
            self.gate_proj = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        if self.relu2:
            return self.down_proj(_ReLUSquared.apply(self.up_proj(x)))
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, kv_cache=None, start_pos=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, start_pos)
        return x + self.mlp(self.post_attention_layernorm(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set (0 means 'from the tokenizer' only in a run config)")
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # Press & Wolf 2017; GPT-2 does the same
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2's residual scaling: each block adds two outputs to the residual stream, so their
        # projections start 1/sqrt(2 * n_layer) smaller to keep its variance flat in depth.
        # zero_init_proj: they start at zero instead, every block the identity (modded-nanogpt, nanochat).
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                if cfg.zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)  # GPT-2 / nanoGPT

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, start_pos: int = 0, return_logits: bool = True):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy (targets of -1 are ignored).

        With ``kv_cache``, ``idx`` holds the tokens at positions start_pos .. start_pos + T - 1.
        ``return_logits=False`` with targets (training): the loss alone, computed chunk by chunk
        without holding the logits (:mod:`lmforge.model.loss`; the same value and gradients).
        """
        T = idx.size(1)
        if start_pos + T > self.config.seq_len:
            raise ValueError(f"sequence of {start_pos + T} tokens is longer than seq_len {self.config.seq_len}")
        cos = self.rope_cos[start_pos:start_pos + T]
        sin = self.rope_sin[start_pos:start_pos + T]
        x = self.embed_tokens(idx)
        for block in self.layers:
            x = block(x, cos, sin, kv_cache, start_pos)
        x = self.norm(x)
        if targets is not None and not return_logits:
            from lmforge.model.loss import linear_cross_entropy

            return None, linear_cross_entropy(x.flatten(0, 1), self.lm_head.weight, targets.reshape(-1),
                                              self.config.logit_softcap)
        logits = self.lm_head(x)
        if self.config.logit_softcap:
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits.float() / cap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def num_params(self) -> int:
        """Parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N + 12 * n_layer * n_embd * seq_len.

        N counts the weights used in matrix multiplies (the embedding lookup is free, but the
        lm_head is not); the second term is attention's QK^T and AV (PaLM, Chowdhery et al. 2022,
        appendix B; nanoGPT's estimate_mfu).
        """
        cfg = self.config
        n = self.num_params() - sum(p.numel() for n_, p in self.named_parameters() if "norm" in n_)
        if not cfg.tie_embeddings:
            n -= self.embed_tokens.weight.numel()
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.seq_len

    def new_kv_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        p = self.embed_tokens.weight
        return KVCache(self.config, batch, max_len or self.config.seq_len, p.device, p.dtype)


# ---------------------------------------------------------------- Hugging Face export / import

def _transformers():
    try:
        import transformers
    except ModuleNotFoundError:
        from lmforge.errors import LmforgeError

        raise LmforgeError("Hugging Face export needs transformers: pip install 'lmforge[hf]'") from None
    return transformers


def hf_config(cfg: ModelConfig, bos_id: int | None = None):
    """The ``transformers.LlamaConfig`` of the same shape (built locally, nothing downloaded).

    Raises LmforgeError naming the options a Llama cannot express (a ReLU² MLP, QK-norm, soft-capping).
    """
    unsupported = cfg.non_llama_options()
    if unsupported:
        from lmforge.errors import LmforgeError

        raise LmforgeError(f"this model uses {', '.join(unsupported)}, which Hugging Face's LlamaForCausalLM "
                           "cannot express; export-hf needs a model trained without "
                           f"{'it' if len(unsupported) == 1 else 'them'} (set it back in [model] and retrain)")
    LlamaConfig = _transformers().LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=mlp_hidden_size(cfg),
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head or cfg.n_head, max_position_embeddings=cfg.seq_len,
        rms_norm_eps=RMS_EPS, tie_word_embeddings=cfg.tie_embeddings, hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, rope_theta=cfg.rope_theta,
        attention_bias=False, mlp_bias=False, bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=None,
    )


def to_hf(model: GPT, bos_id: int | None = None):
    """A ``LlamaForCausalLM`` holding a copy of ``model``'s weights (same logits)."""
    LlamaForCausalLM = _transformers().LlamaForCausalLM

    hf = LlamaForCausalLM(hf_config(model.config, bos_id))
    state = {("lm_head.weight" if k == "lm_head.weight" else f"model.{k}"): v
             for k, v in model.state_dict().items()}
    hf.load_state_dict(state, strict=True)
    return hf.eval()


def from_hf(hf_model) -> GPT:
    """A :class:`GPT` from a ``LlamaForCausalLM`` of a shape this module can express."""
    c = hf_model.config
    theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta") or getattr(c, "rope_theta", 10000.0)
    cfg = ModelConfig(n_layer=c.num_hidden_layers, n_head=c.num_attention_heads,
                      n_kv_head=0 if c.num_key_value_heads == c.num_attention_heads else c.num_key_value_heads,
                      n_embd=c.hidden_size,
                      seq_len=c.max_position_embeddings, vocab_size=c.vocab_size, rope_theta=float(theta),
                      tie_embeddings=bool(c.tie_word_embeddings))
    cfg.mlp_ratio = _mlp_ratio_for(cfg, c.intermediate_size)
    model = GPT(cfg)
    state = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model


def _mlp_ratio_for(cfg: ModelConfig, intermediate: int) -> float:
    """An mlp_ratio giving this SwiGLU width: a round one if one fits, else the exact quotient."""
    for ratio in (4.0, 3.0, 2.0, 8.0, 6.0, 5.0, 1.0, 3 * intermediate / (2 * cfg.n_embd)):
        if mlp_hidden_size(replace(cfg, mlp_ratio=ratio)) == intermediate:
            return ratio
    raise ValueError(f"intermediate_size {intermediate} (not a multiple of 32?) cannot be expressed "
                     f"by mlp_ratio for n_embd {cfg.n_embd}")


def config_dict(cfg: ModelConfig) -> dict:
    return asdict(cfg)
