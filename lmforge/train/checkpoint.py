"""Checkpoints: ``checkpoints/step_N/`` with model.safetensors, model.json, optimizer.pt, trainer.json.

A checkpoint is written into a hidden temporary folder and renamed to ``step_N`` only when
complete; ``checkpoints/latest`` (the name of the newest complete one) is updated after that,
so a crash at any point leaves the previous checkpoint usable.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from lmforge.errors import LmforgeError
from lmforge.model.config import ModelConfig
from lmforge.rundir import write_json_atomic, write_text_atomic

FILES = ("model.safetensors", "model.json", "optimizer.pt", "trainer.json")


def save_checkpoint(ckpt_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    step: int, tokenizer_dir: Path | None, trainer_state: dict, keep: int = 2) -> Path:
    """Write ``ckpt_dir/step_<step>/`` atomically, point ``latest`` at it, keep the newest ``keep``."""
    from safetensors.torch import save_model

    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step_{step}"
    tmp = ckpt_dir / f".step_{step}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding
        write_json_atomic(tmp / "model.json", {"model": asdict(model.config), "step": step, "tokenizer":
                                               str(Path(tokenizer_dir).resolve()) if tokenizer_dir else None})
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        write_json_atomic(tmp / "trainer.json", {"step": step, **trainer_state, "rng": rng_state()})
    except OSError as exc:  # a full disk, a permission: the previous checkpoints stay as they were
        shutil.rmtree(tmp, ignore_errors=True)
        before = latest_checkpoint(ckpt_dir)
        raise LmforgeError(f"{final}: cannot write the checkpoint ({exc.strerror or exc}); make room or fix the "
                           f"folder's permissions, then rerun: it resumes from {before or 'the start'}") from None
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ckpt_dir / "latest", final.name + "\n")
    _prune(ckpt_dir, keep)
    return final


def remove_stale_temporaries(ckpt_dir: Path) -> list[Path]:
    """Delete ``.step_N.<pid>.tmp`` folders whose writer is no longer running; return them."""
    removed = []
    for tmp in Path(ckpt_dir).glob(".step_*.tmp"):
        pid = tmp.name.split(".")[-2]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune(ckpt_dir: Path, keep: int) -> None:
    if keep < 1:
        return
    steps = sorted((int(p.name.split("_")[1]), p) for p in ckpt_dir.glob("step_*") if p.name.split("_")[1].isdigit())
    for _, path in steps[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, or None when there is none."""
    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        path = ckpt_dir / pointer.read_text(encoding="utf-8").strip()
        if is_complete(path):
            return path
    steps = sorted((int(p.name.split("_")[1]), p) for p in ckpt_dir.glob("step_*")
                   if p.name.split("_")[1].isdigit() and is_complete(p))
    return steps[-1][1] if steps else None


def checkpoint_before(ckpt_dir: Path, step: int) -> Path | None:
    """The newest complete checkpoint of a step before ``step``, or None."""
    steps = sorted((int(p.name.split("_")[1]), p) for p in Path(ckpt_dir).glob("step_*")
                   if p.name.split("_")[1].isdigit() and int(p.name.split("_")[1]) < step and is_complete(p))
    return steps[-1][1] if steps else None


def is_complete(path: Path) -> bool:
    return all((Path(path) / f).is_file() for f in ("model.safetensors", "model.json"))


def read_model_json(path: Path) -> dict:
    path = Path(path)
    missing = [f for f in ("model.safetensors", "model.json") if not (path / f).is_file()]
    if missing:
        raise LmforgeError(f"{path}: incomplete checkpoint (missing {', '.join(missing)}); "
                           "use another step folder or rerun training")
    return json.loads((path / "model.json").read_text(encoding="utf-8"))


def check_shape(path: Path, saved: dict, cfg: ModelConfig) -> None:
    """Raise when the checkpoint's model shape differs from the configured one."""
    keys = ("n_layer", "n_head", "n_kv_head", "n_embd", "vocab_size", "mlp_ratio", "tie_embeddings",
            "mlp", "qk_norm", "logit_softcap")
    mine = asdict(cfg)
    saved = {**asdict(ModelConfig()), **saved}  # a checkpoint from before an option existed had it off
    if any(saved.get(k) != mine[k] for k in keys):
        fmt = lambda d: ", ".join(f"{k}={d.get(k)}" for k in keys)  # noqa: E731
        raise LmforgeError(f"{path}: checkpoint model shape ({fmt(saved)}) differs from the config's "
                           f"({fmt(mine)}); restore the [model] settings or start a new run (new name, "
                           "or delete the checkpoints folder)")


def load_weights(path: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import load_model

    load_model(model, str(Path(path) / "model.safetensors"), strict=True, device=str(next(model.parameters()).device))


def load_trainer_state(path: Path, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restore the optimizer (weights_only load) and RNG states; return trainer.json."""
    path = Path(path)
    state = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
    if optimizer is not None:
        if not (path / "optimizer.pt").is_file():
            raise LmforgeError(f"{path}: optimizer.pt missing, cannot resume; delete this checkpoint folder")
        device = optimizer.param_groups[0]["params"][0].device
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    set_rng_state(state.get("rng", {}))
    return state


def rng_state() -> dict:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    def tensor(b64: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(b64)), dtype=torch.uint8)

    if "torch" in state:
        torch.set_rng_state(tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensor(s) for s in state["cuda"]])
