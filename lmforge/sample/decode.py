"""One decoding step of a :class:`~lmforge.model.gpt.GPT`: one new token per sequence through its KV cache.

The model's own forward is written for training (modules, any number of positions, masks). A
decoding step is one position: at batch 1 its cost is reading every weight once (17 MB for the
demo's 4 layers x 256 wide) plus the operations Python dispatches (about 40 per layer there). This
module runs the same computation with half the operations, and reads the weights in the order the
CPU streams fastest:

- the query, key and value projections are one matrix, as are the MLP's gate and up projections,
  all stored transposed ((in, out), contiguous), see ``_Layer``;
- RoPE is one small matrix product on the queries and keys together, with the rotation of the
  step's position built once per step (not per layer);
- the output projections add into the residual stream in the same call (``addmm``);
- no modules, masks or shape checks: the new token may see every cached position.

Prefill (many positions at once) stays with the model's forward, which fills the same
:class:`~lmforge.model.gpt.KVCache`. The fused matrices are copies, refreshed when the model's
weights change (a load or an optimizer step bumps their version counters); they hold a second
copy of the matrices (17 MB for the demo model), the price of the layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.model.gpt import RMS_EPS


class _Layer:
    """The weights of one block, fused and stored transposed ((in, out), contiguous): a product
    ``x @ w`` with one row x then streams w row by row, which MKL runs 2-2.5x faster on this CPU
    than ``F.linear``'s dot product per output with the weights not in cache (bench in docs/train.md)."""

    def __init__(self, block):
        attn, mlp = block.self_attn, block.mlp
        self.ln1 = block.input_layernorm.weight
        self.ln2 = block.post_attention_layernorm.weight
        self.wqkv = _transposed(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)
        self.wo = _transposed(attn.o_proj.weight)
        self.qk_gain = None
        if attn.qk_norm:  # one gain row per head: queries' gain for query heads, keys' for key heads
            self.qk_gain = torch.cat([attn.q_norm.weight.expand(attn.n_head, -1),
                                      attn.k_norm.weight.expand(attn.n_kv_head, -1)])
        self.relu2 = mlp.relu2
        self.wgu = _transposed(mlp.up_proj.weight) if mlp.relu2 else _transposed(mlp.gate_proj.weight,
                                                                                 mlp.up_proj.weight)
        self.wd = _transposed(mlp.down_proj.weight)


def _transposed(*weights: torch.Tensor) -> torch.Tensor:
    """nn.Linear weights (out, in) stacked along out, as one contiguous (in, sum of out) matrix."""
    return torch.cat(weights).t().contiguous()


class Decoder:
    """``step(tokens, cache, pos)``: logits (B, vocab) of the tokens (B,) at position ``pos``.

    ``cache`` holds positions 0 .. pos - 1 (the model's forward filled it, or earlier steps);
    the step writes position ``pos`` into it.
    """

    def __init__(self, model):
        self.model = model
        cfg = model.config
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.softcap = cfg.logit_softcap
        half = self.head_dim // 2
        # rotate-half as a matrix: (x @ swap)[j] = x[j + half] for j < half, x[j - half] after.
        swap = torch.zeros(self.head_dim, self.head_dim, device=model.rope_cos.device)
        idx = torch.arange(half)
        swap[idx + half, idx] = 1.0
        swap[idx, idx + half] = 1.0
        self._swap = swap
        self._eye = torch.eye(self.head_dim, device=swap.device)
        self._version = None
        self._refresh()

    def _weights_version(self) -> int:
        # Tensors made under torch.inference_mode keep no version counter; such a model is taken
        # as never changing (rebuild the Engine after writing its weights).
        return sum(0 if p.is_inference() else p._version for p in self.model.parameters())

    def _refresh(self) -> None:
        with torch.no_grad():
            m = self.model
            self.layers = [_Layer(block) for block in m.layers]
            self.embed, self.norm = m.embed_tokens.weight, m.norm.weight
            self.head = _transposed(m.lm_head.weight)
            # (a, b) -> (a cos - b sin, b cos + a sin) per position: cos on both halves, sin signed.
            self._cos = torch.cat([m.rope_cos, m.rope_cos], dim=-1)
            self._sin = torch.cat([-m.rope_sin, m.rope_sin], dim=-1)
        self._version = self._weights_version()

    def refresh_if_changed(self) -> None:
        """Rebuild the fused copies when the model's weights were written since the last build."""
        if self._weights_version() != self._version:
            self._refresh()

    def rotation(self, pos: int) -> torch.Tensor:
        """RoPE at ``pos`` as a (head_dim, head_dim) matrix R: rope(x) = x @ R, for every layer."""
        return torch.addcmul(self._eye * self._cos[pos], self._swap, self._sin[pos])

    def step(self, tokens: torch.Tensor, cache, pos: int) -> torch.Tensor:
        nh, nkv, d = self.n_head, self.n_kv_head, self.head_dim
        x = F.embedding(tokens, self.embed)
        B, C = x.shape
        rot = self.rotation(pos)
        for i, layer in enumerate(self.layers):
            h = F.rms_norm(x, (C,), layer.ln1, RMS_EPS)
            qkv = torch.mm(h, layer.wqkv).view(B, nh + 2 * nkv, d)
            qk = qkv[:, :nh + nkv]
            if layer.qk_gain is not None:
                qk = F.rms_norm(qk, (d,), None, RMS_EPS) * layer.qk_gain
            qk = torch.matmul(qk, rot)
            k_all, v_all = cache.k[i], cache.v[i]
            k_all.select(2, pos).copy_(qk[:, nh:])
            v_all.select(2, pos).copy_(qkv[:, nh + nkv:])
            y = F.scaled_dot_product_attention(qk[:, :nh].unsqueeze(2), k_all[:, :, :pos + 1],
                                               v_all[:, :, :pos + 1], enable_gqa=nkv != nh)
            x = torch.addmm(x, y.view(B, nh * d), layer.wo)
            h = F.rms_norm(x, (C,), layer.ln2, RMS_EPS)
            if layer.relu2:
                a = F.relu(torch.mm(h, layer.wgu)).square()
            else:
                gate, up = torch.mm(h, layer.wgu).chunk(2, dim=-1)
                a = F.silu(gate) * up
            x = torch.addmm(x, a, layer.wd)
        logits = torch.mm(F.rms_norm(x, (C,), self.norm, RMS_EPS), self.head)
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits
