"""Which characters a page's bytes stand for: HTTP header, then ``<meta charset>``, then detection.

The order follows the HTML standard's encoding sniffing (a byte order mark first, then the
transport's charset, then a prescan of the first 1024 bytes for ``<meta>``), with
charset-normalizer as the last resort instead of the browser's locale default.
"""

from __future__ import annotations

import codecs
import re

# The HTML standard decodes these labels as windows-1252, a superset browsers have always used.
_WHATWG_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252",
                   "us-ascii": "cp1252", "iso8859-1": "cp1252", "x-sjis": "shift_jis"}
_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
PRESCAN_BYTES = 1024  # HTML standard, "prescan a byte stream to determine its encoding"


def codec_name(label: str | None) -> str | None:
    """Python's codec for a charset label, or None when the label is empty or unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WHATWG_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def meta_charset(body: bytes) -> str | None:
    """The charset named by ``<meta charset=...>`` or ``http-equiv`` in the first 1024 bytes."""
    match = _META.search(body[:PRESCAN_BYTES])
    return codec_name(match.group(1).decode("ascii", "replace")) if match else None


def detect_charset(body: bytes, header_charset: str | None = None) -> str:
    """The codec to decode ``body`` with: BOM, header, ``<meta>``, charset-normalizer, else utf-8."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    found = codec_name(header_charset) or meta_charset(body)
    if found:
        return found
    if not body:
        return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(body[:65536]).best()
    return codec_name(best.encoding) if best is not None and codec_name(best.encoding) else "utf-8"


def decode_html(body: bytes, charset: str | None = None) -> str:
    """Decode a page: header ``charset``, then ``<meta charset>``, then detection; never raises.

    >>> decode_html('<meta charset="euc-jp">日本'.encode("euc-jp"))[-2:]
    '日本'
    """
    codec = detect_charset(body, charset)
    text = body.decode(codec, errors="replace")
    return text[1:] if text.startswith("\ufeff") else text
