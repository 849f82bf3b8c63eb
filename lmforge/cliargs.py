"""Argument types and checks the commands share: a bad value is an argument error (exit 2, with
the usage line), never a traceback from deep inside a stage.

    p.add_argument("--temperature", type=non_negative_float)
    p.add_argument("--device", type=device)
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from lmforge.errors import LmforgeError


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; give 0 or more")
    return value


def probability(text: str) -> float:
    """A number in (0, 1], e.g. a top-p mass."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; give 0 or more")
    return value


def seed(text: str) -> int:
    """An integer torch's generators take (64 bits), with room for seed + i."""
    value = _number(text, int)
    if not -2**63 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is not a 64-bit integer; give a seed from 0 to {2**63 - 1}")
    return value


def device(text: str) -> str:
    """``cpu``, ``auto``, ``cuda``, ``cuda:N`` or ``mps``, present on this machine."""
    name = text.strip().lower()
    if name in ("cpu", "auto"):
        return name
    kind, _, index = name.partition(":")
    if kind not in ("cuda", "mps") or (index and not index.isdigit()) or (kind == "mps" and index):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N, mps or auto")
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise argparse.ArgumentTypeError(f"{text!r}: this torch sees no CUDA GPU "
                                             f"(torch {torch.__version__}); use --device cpu")
        if index and int(index) >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: only {count} CUDA GPU(s) here (cuda:0 to cuda:{count - 1})")
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: no Apple GPU (MPS) here; use --device cpu")
    return name


def writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` made (with its parents) and writable by us, or an error naming ``flag`` and the fix."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LmforgeError(f"{flag} {path}: a file is in the way; give a folder") from None
    except OSError as exc:
        raise LmforgeError(f"{flag} {path}: cannot create it ({exc.strerror or exc}); "
                           "give a folder you can write to") from None
    import tempfile

    try:  # a real write: access() says yes to root even where the filesystem says no
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise LmforgeError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); "
                           "give a folder you can write to") from None
    return path
