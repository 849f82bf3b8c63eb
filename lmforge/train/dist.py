"""Devices and processes: pick the device, and join the process group when launched by torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

# Dense bf16 peak FLOP/s per GPU from the vendors' data sheets, for MFU (sparsity not counted).
GPU_PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "A10": 125e12, "L40": 181e12, "L4": 121e12,
    "4090": 165e12, "3090": 71e12, "V100": 125e12, "T4": 65e12,
}
# A rough fp32 figure for one CPU core: 2 FMA units x 8 AVX2 lanes x 2 FLOPs x ~3 GHz ~ 100 GFLOP/s;
# twice that with AVX-512's 16 lanes.
CPU_CORE_PEAK_FLOPS = 100e9


@dataclass
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]


def pick_device(requested: str) -> str:
    """``auto`` -> cuda > mps > cpu; anything else is checked to exist."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        from lmforge.errors import LmforgeError

        raise LmforgeError(f"train.device = {requested!r} but this torch sees no CUDA GPU; "
                           "use device = \"auto\" or \"cpu\"")
    return requested


def init_distributed(requested_device: str) -> DistEnv:
    """Join the process group when RANK/WORLD_SIZE are set (torchrun); else a single process."""
    device = pick_device(requested_device)
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistEnv(device=device)
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # nccl for GPUs; gloo runs the same code path on CPUs (and in the tests).
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world, device=device)


def close_distributed(env: DistEnv) -> None:
    if env.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.world_size > 1:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def peak_flops(configured: float, device: str, threads: int) -> float:
    """Peak FLOP/s of one process for MFU: the configured value, else a table entry or a CPU estimate."""
    if configured > 0:
        return configured
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        for key, flops in GPU_PEAK_FLOPS.items():
            if key in name:
                return flops
        return 0.0  # unknown GPU: MFU not shown; set train.peak_flops
    if device == "cpu":
        return cpu_core_peak_flops() * (threads or torch.get_num_threads())
    return 0.0


def cpu_core_peak_flops() -> float:
    """CPU_CORE_PEAK_FLOPS, doubled when /proc/cpuinfo lists AVX-512 (Linux; elsewhere the AVX2 figure)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            avx512 = any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        avx512 = False
    return CPU_CORE_PEAK_FLOPS * (2 if avx512 else 1)
