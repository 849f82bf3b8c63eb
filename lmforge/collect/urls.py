"""URL normalisation, scope rules and link extraction: which pages the crawler may visit."""

from __future__ import annotations

import codecs
import functools
import re
from html import unescape
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1 << 16)  # pages of a site share their navigation links
def normalize_url(url: str, sort_query: bool = False) -> str | None:
    """One spelling per page, so each is fetched once; None for what is not an http(s) URL.

    Lower-cases scheme and host, drops the fragment and a default port, makes an empty path
    ``/`` and, with ``sort_query``, sorts the query parameters.

    >>> normalize_url("HTTP://Example.COM:80/a?b=2&a=1#top", sort_query=True)
    'http://example.com/a?a=1&b=2'
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = parts.query
    if sort_query and query:
        query = urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def host_of(url: str) -> str:
    """``scheme://host[:port]``: the unit of robots.txt and of politeness."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_NETLOC = re.compile(r"https?://([^/?#]*)")


class Scope:
    """Whether a URL is in scope: ``host`` (seeds' hosts), ``hosts`` (a list) or ``prefix``, then regexes."""

    def __init__(self, mode: str, seeds: list[str], allowed_hosts: list[str] = (),
                 include: list[str] = (), exclude: list[str] = ()):
        self.mode = mode
        self.hosts = {urlsplit(s).netloc for s in seeds}
        if mode == "hosts" and allowed_hosts:
            self.hosts = {h.lower() for h in allowed_hosts}
        # A seed's prefix is everything up to its last '/': https://a.org/docs/x.html -> https://a.org/docs/
        self.prefixes = tuple(s[: s.rfind("/") + 1] if s.count("/") > 2 else s + "/" for s in seeds)
        self.include = [re.compile(p) for p in include]
        self.exclude = [re.compile(p) for p in exclude]

    def __contains__(self, url: str) -> bool:
        if self.mode == "prefix":
            ok = url.startswith(self.prefixes)
        else:
            netloc = _NETLOC.match(url)  # a quarter of urlsplit's time, for every link of every page
            ok = (netloc[1] if netloc else urlsplit(url).netloc) in self.hosts
        if ok and self.include:
            ok = any(p.search(url) for p in self.include)
        return ok and not any(p.search(url) for p in self.exclude)


def extract_links(html: str | bytes, base_url: str, encoding: str | None = None) -> list[str]:
    """Absolute URLs of ``<a href>`` and ``<area href>``, resolved against ``<base href>``.

    Links marked ``rel="nofollow"`` are left out. ``encoding`` (for bytes) must be a name
    libxml2 knows, e.g. "utf-8" or "euc-jp".
    """
    doc = _parse_html(html, encoding)
    if doc is None:
        return []
    base = _base_href(doc, base_url)
    links = []
    for href in _hrefs(doc):
        try:
            links.append(urljoin(base, href))
        except ValueError:
            continue
    return links


def page_links(html: str | bytes, base_url: str, encoding: str | None = None, sort_query: bool = False) -> list[str]:
    """The distinct normalised http(s) URLs a page links to (what the crawler queues).

    Same links as :func:`extract_links` (tested on the python3-doc pages), found by
    :func:`scan_hrefs` instead of a full lxml tree: five times less CPU, which is what bounds a
    crawl's pages/s. Pages of one folder share most of their links (navigation), so joins are
    cached by the base's folder: for an href that does not start with ``?`` or ``#``, RFC 3986
    resolution depends only on the base up to its last ``/``.
    """
    if isinstance(html, bytes) and not _ascii_safe(encoding or "utf-8"):
        html = html.decode(encoding or "utf-8", errors="replace")
    base_href, hrefs = scan_hrefs(html, encoding or "utf-8")
    base = base_url
    if base_href:
        try:
            base = urljoin(base_url, base_href)
        except ValueError:
            pass
    folder = urljoin(base, ".")
    out = {}
    for href in hrefs:
        href = href.split("#", 1)[0]
        if href:  # a bare fragment points back to this page
            url = _join_normalized(base if href.startswith("?") else folder, href, sort_query)
            if url:
                out[url] = None
    return list(out)


# Tags as the HTML tokenizer sees them: comments and the raw text of <script>/<style> hide what
# looks like a tag inside; a quoted attribute value may hold ">". The lookahead after "<" skips
# the other tags (most of a page: span, div, p ...) at the cost of one character test. The
# second branch takes the usual link, all attributes double-quoted, no rel and no entity in
# the href (98% of the links on the python3-doc pages), with no attribute parsing in Python.
_PLAIN_ATTR = r'\s+(?!href=|rel=)[\w:.-]+="[^"]*"'
_TAG = re.compile(r"""<(?=[!aAbBsS])(?:!--.*?(?:-->|$)|(script|style)\b.*?(?:</\1\s*>|$)"""
                  rf"""|(?:a|area)(?:{_PLAIN_ATTR})*\s+href="([^"&]*)"(?:\s+(?!rel=)[\w:.-]+="[^"]*")*\s*>"""
                  r"""|(a|area|base)(?=[\s/>])([^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*)>)""", re.IGNORECASE | re.DOTALL)
_ATTR = re.compile(r"""([^\s/>"'=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*)))?""")


# The same over bytes, for a page in a charset where a byte below 0x80 is always that ASCII
# character: only the links found are decoded, not the page (whose non-ASCII characters make
# Python store it at 2 or 4 bytes a character, slowing the scan).
_TAG_BYTES = re.compile(_TAG.pattern.encode(), re.IGNORECASE | re.DOTALL)


@functools.lru_cache(maxsize=64)
def _ascii_safe(encoding: str) -> bool:
    """Whether bytes below 0x80 are ASCII wherever they occur in ``encoding`` (not so in
    UTF-16, ISO-2022-JP, Shift_JIS, Big5 or GBK, whose multibyte characters use them)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False
    return name in ("utf-8", "ascii") or name.startswith(("iso8859-", "cp125", "koi8", "euc_", "latin"))


def scan_hrefs(html: str | bytes, encoding: str = "utf-8") -> tuple[str | None, list[str]]:
    """``(<base href>, distinct hrefs of <a>/<area> without rel=nofollow)``, by regex over the tags.

    Attribute values are entity-decoded and stripped, as lxml gives them; the first of a
    repeated attribute wins, as in the HTML standard's tokenizer. Bytes must be in an
    ASCII-safe ``encoding`` (:func:`_ascii_safe`), which decodes what is found.
    """
    raw = isinstance(html, bytes)
    base, hrefs = None, {}
    for _, plain, tag, attrs in (_TAG_BYTES if raw else _TAG).findall(html):
        if plain:
            plain = (plain.decode(encoding, errors="replace") if raw else plain).strip()
            if plain:
                hrefs[plain] = None
            continue
        if not tag:
            continue  # a comment, script or style, or a plain link with an empty href
        if raw:
            tag, attrs = tag.decode("ascii"), attrs.decode(encoding, errors="replace")
        href = rel = None
        for name, dq, sq, bare in _ATTR.findall(attrs):
            name, value = name.lower(), dq or sq or bare
            if name == "href" and href is None:
                href = (unescape(value) if "&" in value else value).strip()
            elif name == "rel" and rel is None:
                rel = value
        if not href:
            continue
        if tag.lower() == "base":
            base = href if base is None else base
        elif rel is None or "nofollow" not in unescape(rel).lower():
            hrefs[href] = None
    return base, list(hrefs)


@functools.lru_cache(maxsize=1 << 16)
def _join_normalized(base: str, href: str, sort_query: bool) -> str | None:
    try:
        return normalize_url(urljoin(base, href), sort_query)
    except ValueError:
        return None


def _parse_html(html: str | bytes, encoding: str | None):
    import lxml.html

    if not html:
        return None
    if isinstance(html, str) and html.lstrip().startswith("<?xml"):
        html, encoding = html.encode("utf-8"), "utf-8"  # lxml refuses str with an encoding declaration
    try:
        parser = lxml.html.HTMLParser(encoding=encoding) if isinstance(html, bytes) else None
        return lxml.html.document_fromstring(html, parser=parser)
    except (ValueError, LookupError, lxml.etree.ParserError):
        return None


def _base_href(doc, page_url: str) -> str:
    for el in doc.iter("base"):
        if el.get("href"):
            try:
                return urljoin(page_url, el.get("href").strip())
            except ValueError:
                break
    return page_url


def _hrefs(doc) -> list[str]:
    """Distinct hrefs in document order, without rel=nofollow ones."""
    hrefs = {}
    for el in doc.iter("a", "area"):
        href = el.get("href")
        if href and "nofollow" not in (el.get("rel") or "").lower():
            hrefs[href.strip()] = None
    return list(hrefs)
