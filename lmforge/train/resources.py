"""What this machine can do: free memory against a step's estimated need, matmul peaks, bf16 or not.

The matmul peaks (float32 and bfloat16, FLOP/s of one process with its threads) are kept per
machine, thread count and torch version in ``~/.cache/lmforge/matmul_peak.json`` (``$XDG_CACHE_HOME``
respected), the best measurement so far (float32 is measured again at each start): they are the
denominator of the MFU column on a CPU and decide ``dtype = "auto"`` there.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.rundir import read_json_object, write_json_atomic

PEAK_MATMUL_SIZE = 1024  # big enough to reach the BLAS kernels' plateau; the best of 0.5 s of them (a VM varies 20%)
BF16_MIN_SPEEDUP = 1.2  # bf16 must beat float32 clearly to be worth its coarser rounding


# ---------------------------------------------------------------- memory

def step_memory_bytes(model_cfg, n_params: int, batch: int, optimizer: str, amp: bool) -> int:
    """Estimated peak bytes of one training step: weights, grads, optimizer state, activations.

    Weights and grads are float32 (4 + 4 bytes a parameter); AdamW keeps two moments (8 bytes),
    Muon one momentum (about 4 on its share). Activations per token and layer: the block's
    inputs and outputs kept for backward, about 16 * n_embd values plus 3 * mlp width (SwiGLU's
    gate, up and product; Korthikanti et al. 2022 count 34 * h bytes per token for a GPT layer
    in 16-bit); the logits cost about 16 bytes per token and vocabulary entry (logits, their
    float32 copy, softmax and gradient). Attention itself is flash-style (no T x T matrix) in SDPA.
    """
    from lmforge.model.gpt import mlp_hidden_size

    tokens = batch * model_cfg.seq_len
    value_bytes = 2 if amp else 4
    per_layer = (16 * model_cfg.n_embd + 3 * mlp_hidden_size(model_cfg)) * value_bytes
    activations = tokens * (model_cfg.n_layer * per_layer + 16 * model_cfg.vocab_size)
    state = n_params * (4 + 4 + (6 if optimizer == "muon" else 8))
    return int(activations + state)


def available_memory_bytes(device: str) -> int | None:
    """Free memory for this process: the GPU's free memory, or the OS's MemAvailable; None if unknown."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_step_fits(model_cfg, n_params: int, tc, device: str, amp: bool, world_size: int = 1) -> int:
    """Raise LmforgeError, with the estimate and a batch_size/grad_accum that fits, when a step cannot fit.

    On a CPU all processes of a node share the memory, so the need is multiplied by world_size.
    Returns the estimate (bytes, one process).
    """
    need = step_memory_bytes(model_cfg, n_params, tc.batch_size, tc.optimizer, amp)
    free = available_memory_bytes(device)
    shared = world_size if device == "cpu" else 1
    if free is None or need * shared <= 0.9 * free:
        return need
    fixed = step_memory_bytes(model_cfg, n_params, 0, tc.optimizer, amp)
    per_seq = step_memory_bytes(model_cfg, n_params, 1, tc.optimizer, amp) - fixed
    fits = int((0.8 * free / shared - fixed) // per_seq) if per_seq else 0
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    if fits < 1:
        hint = "a smaller model ([model] n_embd, n_layer, seq_len)"
    else:
        accum = math.ceil(tc.batch_size * tc.grad_accum / fits)
        hint = (f"train.batch_size = {fits} with train.grad_accum = {accum} "
                f"(the same {tc.batch_size * tc.grad_accum} sequences per step)")
    raise LmforgeError(f"a training step needs about {gib(need * shared)} (batch_size {tc.batch_size} x seq_len "
                       f"{model_cfg.seq_len}) but {device} has {gib(free)} free; use {hint}")


# ---------------------------------------------------------------- matmul peaks and bf16

def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmforge" / "matmul_peak.json"


def _machine_key(threads: int) -> str:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return f"{model}|{threads} threads|torch {torch.__version__}"


def _cpuinfo_lines() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return f.readlines()
    except OSError:
        return []


def measure_matmul_flops(dtype, size: int = PEAK_MATMUL_SIZE, seconds: float = 0.5) -> float:
    """FLOP/s of a square matmul of ``dtype`` on the CPU with the current torch threads (best of runs)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up: first-call packing and thread start
    best, spent = 0.0, 0.0
    while spent < seconds:
        t = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t
        spent += dt
        best = max(best, 2 * size**3 / dt)
    return best


def cpu_matmul_peaks(threads: int | None = None, bf16: bool = True) -> dict:
    """{"float32": FLOP/s, "bfloat16": FLOP/s (when ``bf16``), "cached": bool}: this machine's best known peaks.

    Every measurement is a lower bound of the peak (other work on the cores only slows it), so the
    best one is kept: float32 is measured again at every start (0.5 s) and a peak first measured
    while other work held the cores is corrected by the next quieter run. bfloat16 is measured once
    and only when asked (without native bf16 one 1024 x 1024 matmul takes seconds).
    """
    import torch

    threads = threads or torch.get_num_threads()
    path, key = _cache_path(), _machine_key(threads)
    cache = read_json_object(path)
    entry = cache.get(key) if isinstance(cache.get(key), dict) else {}
    known = {k: float(v) for k, v in entry.items() if k in ("float32", "bfloat16") and isinstance(v, (int, float))}
    peaks = {"float32": max(measure_matmul_flops(torch.float32), known.get("float32", 0.0))}
    if bf16:
        peaks["bfloat16"] = known.get("bfloat16") or measure_matmul_flops(torch.bfloat16)
    if os.getloadavg()[0] <= (os.cpu_count() or 1) and {**known, **peaks} != known:
        cache[key] = {**known, **peaks}  # a busy machine's first measurement is not worth a write
        _write_cache(path, cache)
    return {**peaks, "cached": "float32" in known}


def raise_cached_peak(dtype: str, flops: float, threads: int | None = None) -> None:
    """Record ``flops`` as this machine's ``dtype`` peak when it beats the cached one."""
    import torch

    path, key = _cache_path(), _machine_key(threads or torch.get_num_threads())
    cache = read_json_object(path)
    entry = cache.get(key)
    if isinstance(entry, dict) and isinstance(entry.get(dtype), (int, float)) and flops > entry[dtype]:
        entry[dtype] = flops
        _write_cache(path, cache)


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, cache)
    except OSError:
        pass  # a read-only home: measured again next time, nothing else lost


def choose_cpu_dtype(peaks: dict, native_bf16: bool) -> tuple[str, str]:
    """("bfloat16" or "float32", why) for dtype = "auto" on a CPU."""
    if not native_bf16:
        return "float32", "the CPU has no native bf16 (avx512_bf16/AMX)"
    ratio = peaks["bfloat16"] / max(peaks["float32"], 1.0)
    measured = (f"measured matmul peaks bf16 {peaks['bfloat16'] / 1e9:,.0f} vs float32 "
                f"{peaks['float32'] / 1e9:,.0f} GFLOP/s ({ratio:.1f}x)")
    if ratio < BF16_MIN_SPEEDUP:
        return "float32", f"native bf16 but not faster: {measured}"
    return "bfloat16", f"native bf16 (avx512_bf16/AMX) and {measured}"


def require_known_device(device: str) -> None:
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise LmforgeError(f"train.device = {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
