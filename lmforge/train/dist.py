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
    from lmforge.errors import LmforgeError

    if requested.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise LmforgeError(f"train.device = {requested!r} but this torch sees no CUDA GPU; "
                               "use device = \"auto\" or \"cpu\"")
        index = requested.partition(":")[2]
        if index.isdigit() and int(index) >= count:
            raise LmforgeError(f"train.device = {requested!r} but only {count} CUDA GPU(s) are here "
                               f"(cuda:0 to cuda:{count - 1})")
    elif requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LmforgeError("train.device = 'mps' but there is no Apple GPU (MPS) here; "
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


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank (a decision all processes must share)."""
    if env.world_size < 2:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def peak_flops(configured: float, device: str) -> float:
    """Peak FLOP/s of one process for MFU: the configured value, else a table entry for GPUs (0 = unknown).

    On a CPU the trainer measures the peak instead (lmforge.train.resources.cpu_matmul_peaks).
    """
    if configured > 0:
        return configured
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        for key, flops in GPU_PEAK_FLOPS.items():
            if key in name:
                return flops
    return 0.0  # unknown GPU: MFU not shown; set train.peak_flops
