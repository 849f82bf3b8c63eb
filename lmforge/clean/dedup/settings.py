"""``[clean.minhash]``: near-dedup settings (FineWeb's defaults); light, so config loading stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class MinHashConfig:
    """MinHash LSH over word n-grams: documents that agree on every row of one band are duplicates.

    With b bands of r rows, two documents of Jaccard similarity J share a band with probability
    1 - (1 - J^r)^b: for FineWeb's 14 x 8, 0.5 at J ~ 0.72 and 0.92 at J = 0.8.
    """

    ngram: int = 5
    """Words per shingle (FineWeb: 5)."""
    bands: int = 14
    """LSH bands (FineWeb: 14 buckets)."""
    rows: int = 8
    """Hashes per band (FineWeb: 8); the signature has bands x rows values."""
    seed: int = 1
    docs_per_bucket: int = 1_000_000
    """Documents per (band, bucket) task of the bucket stage: bounds each task's memory (16 bytes
    a document); the number of buckets grows with the corpus instead."""

    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"docs_per_bucket"})

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.ngram <= 32:
            problems.append("ngram: must be between 1 and 32 (FineWeb uses 5)")
        if self.bands < 1 or self.rows < 1:
            problems.append("bands and rows: must be 1 or more (FineWeb uses 14 and 8)")
        elif self.bands * self.rows > 1024:
            problems.append("bands x rows: at most 1024 hashes a document")
        if self.docs_per_bucket < 1000:
            problems.append("docs_per_bucket: use at least 1000")
        return problems
