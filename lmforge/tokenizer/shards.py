"""Token shards in llm.c's format: a 256 x int32 header, then the tokens.

Header: ``[0]`` magic 20240520, ``[1]`` version (1: uint16 tokens, 2: uint32 tokens for a vocab
over 65,535), ``[2]`` token count. One line reads a shard: ``np.memmap(path, dtype=np.uint16,
mode="r", offset=1024)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.rundir import atomic_path

MAGIC = 20240520
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSION_DTYPES = {1: np.uint16, 2: np.uint32}


def dtype_for_vocab(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def write_shard(path: str | os.PathLike, tokens: np.ndarray | list[int], vocab_size: int) -> None:
    """Write ``tokens`` to ``path`` atomically (temp name, then rename)."""
    dtype = dtype_for_vocab(vocab_size)
    arr = np.asarray(tokens)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token id out of range for vocab {vocab_size}")
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[0], header[1], header[2] = MAGIC, 1 if dtype is np.uint16 else 2, arr.size
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.tobytes())
            f.write(arr.astype(dtype, copy=False).tobytes())


def read_header(path: str | os.PathLike) -> tuple[int, int]:
    """Return (version, token count) after checking the magic and the file size."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"{path}: token shard not found (run `lmforge tokenize` first)")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise LmforgeError(f"{path}: truncated token shard ({size} bytes, header needs {HEADER_BYTES}); rerun tokenize")
    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if header[0] != MAGIC:
        raise LmforgeError(f"{path}: not a token shard (magic {header[0]}, expected {MAGIC})")
    version, count = int(header[1]), int(header[2])
    if version not in VERSION_DTYPES:
        raise LmforgeError(f"{path}: unknown token shard version {version} (this lmforge reads 1 and 2)")
    expected = HEADER_BYTES + count * np.dtype(VERSION_DTYPES[version]).itemsize
    if size != expected:
        raise LmforgeError(f"{path}: corrupt token shard: header says {count} tokens ({expected} bytes), file has {size}; rerun tokenize")
    return version, count


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a shard's tokens (read-only), after validating its header."""
    version, count = read_header(path)
    if count == 0:
        return np.zeros(0, dtype=VERSION_DTYPES[version])
    return np.memmap(path, dtype=VERSION_DTYPES[version], mode="r", offset=HEADER_BYTES, shape=(count,))


class StreamingShard:
    """A shard written piece by piece (memory stays one piece), atomically: the tokens go to a
    temporary file after a placeholder header; ``close`` writes the real header and renames."""

    def __init__(self, path: str | os.PathLike, vocab_size: int):
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = dtype_for_vocab(vocab_size)
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file = open(self._tmp, "wb")
        self._file.write(b"\0" * HEADER_BYTES)

    def write(self, tokens: np.ndarray) -> None:
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"token id out of range for vocab {self.vocab_size}")
        self._file.write(tokens.astype(self.dtype, copy=False).tobytes())
        self.count += int(tokens.size)

    def close(self) -> None:
        header = np.zeros(HEADER_INTS, dtype=np.int32)
        header[0], header[1], header[2] = MAGIC, 1 if self.dtype is np.uint16 else 2, self.count
        self._file.seek(0)
        self._file.write(header.tobytes())
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


@dataclass
class TokenShardWriter:
    """Writes one (source, split) stream as shards of ``shard_tokens`` tokens, piece by piece."""

    out_dir: Path
    rel_dir: str
    split: str
    shard_tokens: int
    vocab_size: int
    bos_id: int
    shards: list[dict] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    _open: StreamingShard | None = None
    _open_docs: int = 0

    def add(self, tokens: np.ndarray, documents: int, nbytes: int) -> None:
        self.documents += documents
        self.bytes += nbytes
        while tokens.size:
            if self._open is None:
                rel = f"{self.rel_dir}/{self.split}_{len(self.shards):06d}.bin"
                self._open, self._open_docs = StreamingShard(self.out_dir / rel, self.vocab_size), 0
                self.shards.append({"path": rel, "tokens": 0, "documents": 0})
            piece = tokens[: self.shard_tokens - self._open.count]
            self._open.write(piece)
            # A document belongs to the shard that holds its BOS (it may run on into the next).
            self._open_docs += int(np.count_nonzero(piece == self.bos_id))
            tokens = tokens[piece.size:]
            if self._open.count == self.shard_tokens:
                self._finish()

    def close(self) -> None:
        if self._open is not None:
            self._finish()

    def abort(self) -> None:
        if self._open is not None:
            self._open.abort()
            self._open = None

    def _finish(self) -> None:
        self._open.close()
        self.shards[-1].update(tokens=self._open.count, documents=self._open_docs)
        self._open = None

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)
