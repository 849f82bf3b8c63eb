"""The output head and its cross-entropy in one pass over row chunks, never holding all the logits.

Training needs only the loss, not the (tokens x vocabulary) logits. Materialised, they are the
largest tensor of a small model's step (16 x 256 tokens x 4096 entries = 64 MiB in float32), and
soft-capping, log-softmax, their backward and the gradient's zero fill each stream all of it
through memory again. Here each chunk of rows goes matmul -> soft-cap -> log-sum-exp -> gradient
-> two matmuls, and the gradients of the hidden states and of the head are computed in the forward
(as Liger-Kernel's fused linear cross-entropy does): backward only scales them. On a 2-core CPU
this took the head's share of a step from 780 to about 400 ms; chunks of 512 rows (8 MiB of a
4,096 vocabulary) instead of 64 took it to about 250 ms (2 threads; 550 -> 500 ms on 1): the
matmuls of 64 rows ran at 90 GFLOP/s against 130-150 for larger ones, which outweighs the cache.

Under autocast the matmuls run in the autocast dtype and the elementwise work in float32, as the
unfused path does.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 2**21  # logits per chunk on a CPU: 8 MiB in float32 (512 rows of 4,096), see the docstring
GPU_CHUNK_ELEMENTS = 2**26  # on a GPU few large chunks (256 MiB), so kernel launches stay few


def _rows_per_chunk(vocab: int, device: torch.device) -> int:
    return max(16, (CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS) // vocab)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, softcap: float, ignore_index: int):
        grads = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]  # False under no_grad (evaluation)
        ctx.dtypes = (h.dtype, weight.dtype)
        valid = targets != ignore_index
        count = valid.sum().clamp(min=1)
        scale = valid / count  # d loss / d (row's loss): 1/count, 0 for ignored rows
        safe = torch.where(valid, targets, 0)
        acc = torch.promote_types(h.dtype, torch.float32)  # float32, or float64 for float64 inputs
        total = torch.zeros((), device=h.device, dtype=acc)
        grad_h = torch.empty_like(h) if grads else None
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc) if grads else None
        step = _rows_per_chunk(weight.size(0), h.device)
        for s in range(0, h.size(0), step):
            hc, yc = h[s:s + step], safe[s:s + step]
            z = (hc @ weight.T).to(acc)
            if softcap:
                tanh = z.div_(softcap).tanh_()
                z = tanh * softcap
            lse = torch.logsumexp(z, dim=-1)
            picked = z.gather(1, yc[:, None]).squeeze(1)
            total += ((lse - picked) * valid[s:s + step]).sum()
            if grads:
                # softmax - one_hot(target), times 1/count, through the soft-cap's derivative 1 - tanh²
                p = z.sub_(lse[:, None]).exp_()
                p.scatter_add_(1, yc[:, None], torch.full_like(picked, -1.0)[:, None])
                p.mul_(scale[s:s + step, None])
                if softcap:
                    p.mul_(tanh.square_().neg_().add_(1.0))
                grad_h[s:s + step] = p @ weight
                grad_w += p.T @ hc
        ctx.save_for_backward(grad_h, grad_w)
        return total / count

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        return (grad_h * grad_loss).to(h_dtype), (grad_w * grad_loss).to(w_dtype), None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float = 0.0,
                         ignore_index: int = -1) -> torch.Tensor:
    """Mean cross-entropy of ``softcap(h @ weight.T)`` against ``targets`` (N,), ``h`` (N, D).

    The same value and gradients as ``F.cross_entropy(cap * tanh(h @ weight.T / cap), targets)``
    (or without the cap when ``softcap`` is 0), targets equal to ``ignore_index`` left out.
    """
    return _LinearCrossEntropy.apply(h, weight, targets, float(softcap), ignore_index)
