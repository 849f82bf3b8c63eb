"""Batches of (x, y) token windows from the token shards, with a per-source mixture.

Each source's train shards form one token stream, cut into non-overlapping windows of
seq_len + 1 tokens (x is the first seq_len, y the last seq_len). One epoch of a source visits
all its windows once, in an order shuffled per epoch. Every sequence of a batch first picks a
source at random by its mixture weight among the sources that have not reached their epoch
cap (cfg.train.epochs), then takes that source's next window. When every source is capped the
loader is exhausted and training ends.

Every process runs the same sampler, which draws the *global* batch (batch_size * world_size
sequences); rank r reads only its slice r*B .. (r+1)*B. So the data order does not depend on
the number of processes, and the position (``state()``) is the same on every rank.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.tokenizer.shards import read_shard


def load_manifest(tokens_dir: Path) -> dict:
    path = Path(tokens_dir) / "manifest.json"
    if not path.is_file():
        raise LmforgeError(f"{path}: token manifest not found; run the tokenize stage first "
                           "(`lmforge run CONFIG --until tokenize`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        problem = "" if isinstance(manifest, dict) and isinstance(manifest.get("vocab_size"), int) and \
            isinstance(manifest.get("sources"), dict) else "no vocab_size or sources"
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = str(exc)
    if problem:
        raise LmforgeError(f"{path}: not a token manifest ({problem}); rerun the tokenize stage: "
                           "`lmforge run CONFIG --force tokenize`")
    return manifest


class TokenStream:
    """The concatenated tokens of some shards, read as windows of a fixed length."""

    def __init__(self, tokens_dir: Path, entries: list[dict]):
        self.paths = [Path(tokens_dir) / e["path"] for e in entries]
        self.counts = [int(e["tokens"]) for e in entries]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._arrays: dict[int, np.ndarray] = {}

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens start .. start + length, across shard boundaries."""
        out, pos = [], start
        while pos < start + length:
            i = int(np.searchsorted(self.starts, pos, side="right")) - 1
            arr = self._shard(i)
            offset = pos - int(self.starts[i])
            take = min(start + length - pos, len(arr) - offset)
            out.append(np.asarray(arr[offset:offset + take], dtype=np.int64))
            pos += take
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _shard(self, i: int) -> np.ndarray:
        if i not in self._arrays:
            self._arrays[i] = read_shard(self.paths[i])
        return self._arrays[i]


@dataclass
class Source:
    name: str
    index: int
    stream: TokenStream
    windows: int
    weight: float
    max_windows: float
    """Windows this source may give in all (epochs cap times windows per epoch; inf = no cap)."""
    declared_epochs: float | None = None
    """The epochs cap of cfg.train.epochs (None: no cap)."""
    used: int = 0
    _order: np.ndarray | None = field(default=None, repr=False)
    _order_epoch: int = -1

    @property
    def exhausted(self) -> bool:
        return self.used >= self.max_windows

    def next_window(self, seed: int) -> int:
        """Index of the next window (shuffled per epoch, from the seed, source and epoch)."""
        epoch, i = divmod(self.used, self.windows)
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([seed, self.index, epoch]).permutation(self.windows)
            self._order_epoch = epoch
        self.used += 1
        return int(self._order[i])


class TrainLoader:
    """Deterministic mixture loader; ``next_batch()`` -> (x, y) int64 arrays of (B, seq_len), or None."""

    def __init__(self, tokens_dir: Path, manifest: dict, seq_len: int, batch_size: int, seed: int,
                 mixture: dict[str, float] | None = None, epochs: dict[str, float] | None = None,
                 rank: int = 0, world_size: int = 1, log=print):
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.sources = _make_sources(tokens_dir, manifest, seq_len, mixture or {}, epochs or {}, log)
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.sequences = 0
        """Sequences drawn so far (all ranks together)."""

    def next_batch(self) -> tuple[np.ndarray, np.ndarray] | None:
        picks = []
        for _ in range(self.batch_size * self.world_size):
            pick = self._next_pick()
            if pick is None:
                return None
            picks.append(pick)
        mine = picks[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        rows = np.stack([src.stream.read(w * self.seq_len, self.seq_len + 1) for src, w in mine])
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])

    def _next_pick(self):
        live = [s for s in self.sources if not s.exhausted and s.weight > 0]
        if not live:
            return None
        weights = np.array([s.weight for s in live])
        src = live[int(self.rng.choice(len(live), p=weights / weights.sum()))]
        self.sequences += 1
        return src, src.next_window(self.seed)

    def counts(self) -> dict[str, int]:
        """Windows drawn per source so far."""
        return {s.name: s.used for s in self.sources}

    def epochs_done(self) -> dict[str, float]:
        return {s.name: round(s.used / s.windows, 4) for s in self.sources}

    def source_report(self) -> dict[str, dict]:
        """Per source: its mixture weight, train tokens, tokens seen so far (predicted positions)
        and the epochs they make, beside the declared cap."""
        total = sum(s.weight for s in self.sources) or 1.0
        return {s.name: {"weight": round(s.weight / total, 4), "tokens": s.stream.total,
                         "tokens_seen": s.used * self.seq_len, "declared_epochs": s.declared_epochs,
                         "epochs": round(s.used * self.seq_len / s.stream.total, 4)} for s in self.sources}

    def state(self) -> dict:
        """Position to save in a checkpoint (JSON-serialisable)."""
        return {"sequences": self.sequences, "used": self.counts(), "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.sequences = int(state["sequences"])
        for s in self.sources:
            s.used = int(state["used"].get(s.name, 0))
        self.rng.bit_generator.state = state["rng"]


def _make_sources(tokens_dir, manifest, seq_len, mixture, epochs, log) -> list[Source]:
    names = list(manifest.get("sources", {}))
    unknown = sorted((set(mixture) | set(epochs)) - set(names))
    if unknown:
        raise LmforgeError(f"train.mixture/train.epochs name unknown source(s) {', '.join(unknown)}; "
                           f"the token manifest has: {', '.join(names) or 'none'}")
    sources = []
    for i, name in enumerate(names):
        stream = TokenStream(tokens_dir, manifest["sources"][name].get("train", []))
        windows = max(0, (stream.total - 1) // seq_len)
        if windows == 0:
            log(f"[train] source {name}: {stream.total} train tokens, fewer than seq_len + 1 = {seq_len + 1}; skipped")
            continue
        # Default weight: proportional to tokens, i.e. every token seen about equally often.
        weight = float(mixture.get(name, 0.0)) if mixture else float(stream.total)
        cap = epochs.get(name)
        max_windows = math.inf if cap is None else max(1, round(cap * windows))
        sources.append(Source(name, i, stream, windows, weight, max_windows, cap))
    if not sources:
        raise LmforgeError(f"no source has at least seq_len + 1 = {seq_len + 1} train tokens; "
                           "collect more text or lower model.seq_len")
    if not any(s.weight > 0 for s in sources):
        raise LmforgeError("train.mixture gives no weight to any source with data; give at least one a weight > 0")
    return sources


def val_batches(tokens_dir: Path, manifest: dict, seq_len: int, batch_size: int, max_batches: int
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed validation batches: windows spread evenly over the val shards of all sources."""
    entries = [e for src in manifest.get("sources", {}).values() for e in src.get("val", [])]
    stream = TokenStream(tokens_dir, entries)
    windows = max(0, (stream.total - 1) // seq_len)
    count = min(windows, batch_size * max_batches)
    if count == 0:
        return []
    picks = np.linspace(0, windows - 1, count).round().astype(np.int64)
    rows = np.stack([stream.read(int(w) * seq_len, seq_len + 1) for w in picks])
    x, y = np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, count, batch_size)]
