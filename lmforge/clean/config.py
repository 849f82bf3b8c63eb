"""Config of the clean stage: inputs, filters, deduplication and PII masking."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InputSpec:
    """One input of the clean stage (``[[clean.inputs]]``)."""

    path: str = ""
    """A file, a folder or a glob (``data/*.warc.gz``)."""
    format: str = "auto"
    """auto, warc, wet, arc, html, jsonl, parquet."""
    source: str = ""
    """Name of the source (for mixtures); empty uses the file's stem."""
    text_field: str = "text"
    """Field holding the text in JSONL/Parquet."""

    def validate(self) -> list[str]:
        problems = [] if self.path else ["path: missing"]
        if self.format not in ("auto", "warc", "wet", "arc", "html", "jsonl", "parquet"):
            problems.append(f"format: {self.format!r} is not one of auto, warc, wet, arc, html, jsonl, parquet")
        return problems


@dataclass
class CleanConfig:
    """``[clean]``: turns raw records into documents worth training on."""

    inputs: list[InputSpec] = field(default_factory=list)
    """Existing archives to read; empty reads this run's crawl/*.warc.gz as source 'web'."""
    languages: list[str] = field(default_factory=lambda: ["en"])
    """ISO 639-1 codes kept by the language filter; empty keeps every language."""
    min_language_score: float = 0.65
    min_words: int = 50
    max_words: int = 100_000
    quality_filter: bool = True
    """Gopher-style quality rules (word length, symbol ratio, stop words, ...)."""
    exact_dedup: bool = True
    minhash_dedup: bool = True
    minhash_threshold: float = 0.8
    """Estimated Jaccard similarity of 5-gram shingles above which a document is a near duplicate."""
    minhash_num_perm: int = 128
    pii: bool = True
    """Mask e-mail addresses, IP addresses and phone numbers."""
    workers: int = 1
    """Processes for extraction and filtering (0 = one per CPU)."""
    executor: str = "local"
    """local (process pool) or ray."""

    def validate(self) -> list[str]:
        problems = []
        if not 0 <= self.min_language_score <= 1:
            problems.append("min_language_score: must be between 0 and 1")
        if not 0 < self.minhash_threshold <= 1:
            problems.append("minhash_threshold: must be in (0, 1]")
        if self.executor not in ("local", "ray"):
            problems.append(f"executor: {self.executor!r} is not one of local, ray")
        if self.min_words < 0 or self.max_words < self.min_words:
            problems.append("min_words/max_words: need 0 <= min_words <= max_words")
        return problems
