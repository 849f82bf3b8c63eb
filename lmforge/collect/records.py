"""The unit that flows from collect to clean: one raw record, before text extraction."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RawRecord:
    """A fetched page or a ready-made text, as read from a WARC/WET/ARC/HTML/JSONL/Parquet file.

    Exactly one of ``body`` (raw HTTP payload bytes, usually HTML, to be extracted) and ``text``
    (text already extracted, e.g. from WET or FineWeb parquet) is set.
    """

    id: str
    """Stable id: the WARC-Record-ID, or ``<file>:<line/row>`` for JSONL/Parquet."""
    url: str = ""
    body: bytes | None = None
    text: str | None = None
    content_type: str = ""
    """MIME type without parameters, lower case (``text/html``)."""
    charset: str | None = None
    """Charset named by the HTTP header, else the one lmforge's crawler identified
    (``WARC-Identified-Content-Charset``), else None; pass it to ``decode_html``."""
    date: str = ""
    path: str = ""
    """The file the record came from."""
    extra: dict = field(default_factory=dict)
