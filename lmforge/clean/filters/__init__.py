"""Document filters. Each has a ``name`` and ``filter(doc)`` returning ``True`` (keep) or
``(False, reason)`` / ``(False, reason, detail)``; the stage counts ``dropped_<reason>`` and
writes the rejects (the datatrove convention)."""

from __future__ import annotations

from typing import Protocol, Union

from lmforge.clean.document import Document

FilterResult = Union[bool, tuple]


class DocumentFilter(Protocol):
    name: str

    def filter(self, doc: Document) -> FilterResult: ...
