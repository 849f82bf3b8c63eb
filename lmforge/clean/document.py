"""The unit that flows through the clean steps: one document, its text and what we learned about it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    """A record's text on its way to ``docs/*.parquet``.

    ``order`` is the record's place in the input (file index, record index): dedup keeps the
    first of a group in this order, so the result does not depend on how shards were scheduled.
    """

    id: str
    url: str
    source: str
    text: str
    date: str = ""
    language: str = ""
    language_score: float = 0.0
    order: tuple[int, int] = (0, 0)
    meta: dict = field(default_factory=dict)
    """Per-step facts (exact hash, MinHash signature, PII counts); not written to Parquet."""

    @property
    def n_words(self) -> int:
        """Words as the quality rules count them (a CJK ideograph or kana is one word)."""
        from lmforge.clean.words import split_words

        return len(split_words(self.text))


@dataclass
class Reject:
    """A dropped document with the step and the reason (``rejects/*.parquet``)."""

    id: str
    url: str
    source: str
    step: str
    reason: str
    detail: str
    text: str
    order: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, doc: Document, step: str, reason: str, detail: str = "", text_limit: int = 2000) -> "Reject":
        return cls(doc.id, doc.url, doc.source, step, reason, detail, doc.text[:text_limit], doc.order)
