"""Config of the clean stage: inputs, filters, deduplication and PII masking."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from lmforge.clean.dedup.settings import MinHashConfig


@dataclass
class InputSpec:
    """One input of the clean stage (``[[clean.inputs]]``)."""

    path: str = ""
    """A file, a folder or a glob (``data/*.warc.gz``)."""
    format: str = "auto"
    """auto, warc, wet, arc, html, jsonl, parquet."""
    source: str = ""
    """Name of the source (for mixtures); empty uses the path's stem (a folder's name, a file's
    name without extensions, or for a glob the folder it is in)."""
    text_field: str = "text"
    """Field holding the text in JSONL/Parquet."""

    def validate(self) -> list[str]:
        problems = [] if self.path else ["path: missing"]
        if self.format not in ("auto", "warc", "wet", "arc", "html", "jsonl", "parquet"):
            problems.append(f"format: {self.format!r} is not one of auto, warc, wet, arc, html, jsonl, parquet")
        return problems


@dataclass
class QualityConfig:
    """``[clean.quality]``: Gopher quality and repetition rules (Rae et al. 2021) plus FineWeb's
    punctuated-lines rule; the defaults are the papers' numbers."""

    enabled: bool = True
    min_words: int = 50
    """Gopher: fewer words than this is too short to be useful."""
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    """Gopher: mean word length (characters) must lie in [min, max] (alphabetic scripts only)."""
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    """Gopher: at most this many '#' and ellipses per word."""
    max_bullet_lines_ratio: float = 0.9
    """Gopher: at most this fraction of lines may start with a bullet."""
    max_ellipsis_lines_ratio: float = 0.3
    """Gopher: at most this fraction of lines may end with an ellipsis."""
    min_alpha_words_ratio: float = 0.8
    """Gopher: at least this fraction of words must contain a letter."""
    min_stop_words: int = 2
    """Gopher: English documents need this many of the, be, to, of, and, that, have, with."""
    min_punct_lines_ratio: float = 0.12
    """FineWeb: at least this fraction of lines must end in punctuation."""
    max_duplicate_lines_ratio: float = 0.3
    """Gopher: at most this fraction of lines may repeat an earlier line."""
    max_duplicate_line_chars_ratio: float = 0.2
    """Gopher: at most this fraction of characters may be in repeated lines."""

    def validate(self) -> list[str]:
        problems = []
        if self.min_words < 0 or self.max_words < self.min_words:
            problems.append("min_words/max_words: need 0 <= min_words <= max_words")
        if not 0 < self.min_mean_word_length <= self.max_mean_word_length:
            problems.append("min_mean_word_length/max_mean_word_length: need 0 < min <= max")
        for name in ("max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio",
                     "min_punct_lines_ratio", "max_duplicate_lines_ratio", "max_duplicate_line_chars_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}: must be between 0 and 1")
        if self.max_symbol_word_ratio < 0 or self.min_stop_words < 0:
            problems.append("max_symbol_word_ratio and min_stop_words: must be 0 or more")
        return problems


@dataclass
class CleanConfig:
    """``[clean]``: turns raw records into documents worth training on."""

    # Settings that change how fast, not what: outside the stage fingerprint (lmforge/fingerprint.py).
    NOT_IN_FINGERPRINT: ClassVar[frozenset[str]] = frozenset({"workers", "executor"})

    inputs: list[InputSpec] = field(default_factory=list)
    """Existing archives to read; empty reads this run's crawl/*.warc.gz as source 'web'."""
    languages: list[str] = field(default_factory=lambda: ["en"])
    """ISO 639-1 codes kept by the language filter; empty keeps every language."""
    min_language_score: float = 0.65
    """Drop documents whose language probability is lower (FineWeb uses 0.65)."""
    extract_fast: bool = False
    """Skip trafilatura's readability/jusText fallback: about 1.7x faster, the same text on
    well-formed pages such as the Python docs, less robust on odd ones."""
    url_block_domains: list[str] = field(default_factory=list)
    """Domains whose pages (subdomains included) are dropped, e.g. ["example.com"]."""
    url_block_patterns: list[str] = field(default_factory=list)
    """Regexes; a document whose URL matches one is dropped."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    """``[clean.quality]``: the Gopher/FineWeb quality thresholds."""
    url_dedup: bool = True
    """Keep one page per URL as web servers spell it (``/`` and ``/index.html`` are one page), also
    with exact and near dedup switched off."""
    exact_dedup: bool = True
    minhash_dedup: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    """``[clean.minhash]``: near-dedup settings (FineWeb's: word 5-grams, 14 bands x 8 rows)."""
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
        if self.executor not in ("local", "ray"):
            problems.append(f"executor: {self.executor!r} is not one of local, ray")
        if self.workers < 0:
            problems.append("workers: must be 0 (one per CPU) or more")
        problems += [f"languages: {code!r} is not an ISO 639-1 code such as en, ko, ru"
                     for code in self.languages if not re.fullmatch(r"[a-z]{2,3}", code)]
        problems += _pattern_problems(self.url_block_patterns)
        return problems


def _pattern_problems(patterns: list[str]) -> list[str]:
    problems = []
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"url_block_patterns[{i}]: not a valid regex ({exc})")
    return problems
