"""Stage fingerprints: what made a stage's outputs, so that a rerun redoes exactly what changed.

Like DVC's ``dvc.lock`` or Nextflow's task hashes, a stage's completion record holds a hash of
everything that decides its outputs:

- the settings of its config sections that change results (a config dataclass names the ones
  that cannot, such as ``workers`` or ``threads``, in ``NOT_IN_FINGERPRINT``),
- the fingerprint of the stage it reads (so a change upstream makes every later stage stale),
- the identity of external input files (path, size and mtime; their content hash when
  ``hash_inputs = true``),
- the stage's output format version.

The settings themselves are kept in the record too, so that a stale stage can say what changed
(``clean.gopher_quality.min_words 50 -> 5``).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable


def result_settings(section: Any, prefix: str) -> dict[str, Any]:
    """The settings of a config dataclass that change results, flattened to dotted keys.

    >>> from lmforge.train.config import TrainConfig
    >>> s = result_settings(TrainConfig(), "train")
    >>> "train.lr" in s, "train.threads" in s
    (True, False)
    """
    skip = getattr(type(section), "NOT_IN_FINGERPRINT", frozenset())
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if f.name in skip:
            continue
        value = getattr(section, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            flat.update(result_settings(value, key))
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            flat[key] = [result_settings(v, "") for v in value]
        else:
            flat[key] = value
    return flat


def file_identities(patterns: Iterable[str], hash_content: bool = False) -> list[list]:
    """``[path, size, mtime_ns]`` (or ``[path, size, sha256]``) of every file the patterns name.

    A pattern is a file, a folder (every file under it) or a glob; a URL is kept as it is (its
    content is the remote server's business).
    """
    out: list[list] = []
    for pattern in patterns:
        if "://" in pattern:
            out.append([pattern])
            continue
        for path in _expand(pattern):
            st = path.stat()
            out.append([str(path), st.st_size, _sha256(path) if hash_content else st.st_mtime_ns])
    return out


def _expand(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(settings: dict, upstream: str | None, inputs: list, version: int) -> str:
    """The fingerprint proper: a hash of the canonical JSON of what decides the outputs."""
    blob = json.dumps({"settings": settings, "upstream": upstream, "inputs": inputs, "version": version},
                      sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def describe_changes(old: dict, new: dict, limit: int = 4) -> list[str]:
    """``key old -> new`` for each setting that differs, e.g. ``model.n_layer 2 -> 3``."""
    keys = sorted(set(old) | set(new))
    changes = [f"{k} {_short(old.get(k, '(unset)'))} -> {_short(new.get(k, '(unset)'))}"
               for k in keys if old.get(k, _MISSING) != new.get(k, _MISSING)]
    if len(changes) > limit:
        changes = changes[:limit] + [f"and {len(changes) - limit} more"]
    return changes


_MISSING = object()


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

