"""Exact deduplication: SHA-1 of the text lower-cased with whitespace collapsed."""

from __future__ import annotations

import hashlib

from lmforge.clean.document import Document


def text_hash(text: str) -> str:
    """Hex SHA-1 of ``text`` normalised, so case and spacing differences still match.

    >>> text_hash("Hello   World\\n") == text_hash("hello world")
    True
    """
    return hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


class ExactDedup:
    """``exact_duplicate`` for a document whose hash was seen; the detail is the kept document's id."""

    name = "exact_dedup"

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def filter(self, doc: Document):
        digest = doc.meta.get("sha1") or text_hash(doc.text)
        kept = self.seen.setdefault(digest, doc.id)
        return True if kept == doc.id else (False, "exact_duplicate", kept)
