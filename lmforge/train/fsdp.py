"""``[train] parallel = "fsdp"``: parameters, gradients and optimizer state sharded over the processes (FSDP2).

Each block is one ``torch.distributed.fsdp.fully_shard`` unit, the rest (embedding, final norm, head)
the root unit, as in torchtitan. Checkpoints stay the format of one process: the full weights and a
full optimizer state (keyed by parameter name) are gathered for rank 0, which writes them; on resume
every rank reads them and keeps its shard. Muon runs on the sharded matrices as DTensors, whose
matmuls gather what Newton–Schulz needs, so every rank applies the update of the full matrix.
"""

from __future__ import annotations

import torch


def shard_model(model: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block)
    fully_shard(model)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_model_copy(model: torch.nn.Module):
    """An unsharded CPU GPT with the sharded model's weights (collective: every rank calls it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from lmforge.model.gpt import GPT

    state = get_model_state_dict(model, options=_options())
    copy = GPT(model.config)
    if state:  # rank 0 alone receives the full state (cpu_offload)
        copy.load_state_dict(state, strict=True)
    return copy


def load_full_weights(model: torch.nn.Module, path) -> None:
    """Load a checkpoint's full weights into the sharded model (every rank reads the file)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    from lmforge.model.gpt import GPT
    from lmforge.train.checkpoint import load_weights

    copy = GPT(model.config)
    load_weights(path, copy)
    set_model_state_dict(model, copy.state_dict(), options=_options(strict=True))


class ShardedOptimizerState:
    """state_dict()/load_state_dict() of an OptimizerSet over a sharded model, in full (per-name) form."""

    def __init__(self, model: torch.nn.Module, optimizer):
        self.model, self.optimizer = model, optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return {name: get_optimizer_state_dict(self.model, opt, options=_options())
                for name, opt in self.optimizer.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        from lmforge.errors import LmforgeError

        if set(state) != set(self.optimizer.optimizers):
            raise LmforgeError("the checkpoint's optimizer state is for another train.optimizer; restore the "
                               "setting or start a new run")
        for name, opt in self.optimizer.optimizers.items():
            peaks = [g["initial_lr"] for g in opt.param_groups]
            try:
                set_optimizer_state_dict(self.model, opt, state[name], options=_options())
            except (KeyError, ValueError, RuntimeError) as e:
                raise LmforgeError(f"the checkpoint's {name} state does not fit (saved by DDP, resumed with "
                                   f"fsdp?): {e}; keep train.parallel as it was or start a new run") from None
            for group, peak in zip(opt.param_groups, peaks):
                group["initial_lr"] = peak


class FullState:
    """An optimizer state already gathered: what save_checkpoint asks of an optimizer."""

    def __init__(self, state: dict):
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def gather_for_checkpoint(model: torch.nn.Module, optimizer):
    """(unsharded model copy, FullState) for rank 0 to save; collective."""
    return full_model_copy(model), FullState(ShardedOptimizerState(model, optimizer).state_dict())
