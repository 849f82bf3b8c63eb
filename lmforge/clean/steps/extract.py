"""The record's main text: HTML through trafilatura (lmforge/clean/extract.py), text records as
they are.

Reasons: ``http_status`` (a response other than 2xx: error pages, redirects), ``non_html``
(neither text nor HTML), ``extraction_error`` (the parser failed on the page),
``extract_timeout`` (over the page's time limit), ``empty_extraction`` (no main text found).
"""

from __future__ import annotations

from lmforge.clean.steps import Step

RECORD = "record"
"""``doc.meta`` key of the reader's record, until this step has turned it into text."""


class ExtractStep(Step):
    name = "extract"

    def __init__(self, settings=None, words=None):
        from lmforge.clean.config import ExtractStep as Settings

        super().__init__(settings or Settings(), words)

    def filter(self, doc):
        record = doc.meta.pop(RECORD, None)
        if record is None:  # a document made from text
            return True if doc.text else (False, "empty_extraction")
        status = record.extra.get("status") or 200
        if not 200 <= status < 300:
            return False, "http_status", str(status)
        if record.text is not None:
            doc.text = record.text.strip()
        elif record.body is not None and (record.content_type in HTML_TYPES or _looks_like_html(record)):
            return self._extract(doc, record)
        else:
            return False, "non_html", record.content_type
        return True if doc.text else (False, "empty_extraction", record.content_type)

    def _extract(self, doc, record):
        from lmforge.clean.extract import ExtractTimeout, clean_lines, extract_text
        from lmforge.collect.charset import decode_html

        s = self.settings
        raw = decode_html(record.body, record.charset)
        limit = None if s.timeout_s is False else s.timeout_s + s.timeout_s_per_mb * len(record.body) / 1e6
        try:
            text = extract_text(raw, record.url or None, s.fast, timeout=limit)
        except ExtractTimeout:
            doc.text = raw  # the reject keeps the page's start
            return False, "extract_timeout", f"{limit:.1f}s, {len(record.body)} bytes"
        except Exception as exc:  # one malformed page must not end the shard; it is counted and kept
            doc.text = raw
            return False, "extraction_error", f"{type(exc).__name__}: {exc}"[:200]
        doc.text = clean_lines(text) if s.drop_symbol_lines else text
        if not doc.text:
            doc.text = raw
            return False, "empty_extraction", record.content_type
        return True


HTML_TYPES = ("text/html", "application/xhtml+xml")


def _looks_like_html(record) -> bool:
    return not record.content_type and record.body.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))
