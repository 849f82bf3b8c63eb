"""One HTTP exchange of the crawler, from request to packed WARC records: :func:`fetch_exchange`.

It runs in a helper process (helpers.py), so that the request, the header parsing, the charset,
the links, gzip and the digests of one page all run beside the other pages' instead of under
the crawl process's one GIL; the crawl process only schedules, journals and appends the packed
records to the WARC file. It is a function of its arguments (and of this process's urllib3
pool): it runs in the crawl's own threads when there are no helpers.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_LINKS = 10_000
"""Links kept from one page (in page order): a page listing more is a link farm or a dump."""


@dataclass(frozen=True)
class FetchOptions:
    """What an exchange needs from the crawl's config (small: it goes with every call)."""

    user_agent: str
    connect_timeout: float
    read_timeout: float
    per_host_connections: int
    max_page_bytes: int
    sort_query: bool
    gzip_level: int

    @classmethod
    def of(cls, cfg) -> "FetchOptions":
        return cls(cfg.user_agent, cfg.connect_timeout, cfg.read_timeout, cfg.per_host_concurrency,
                   cfg.max_page_bytes, cfg.sort_query, cfg.warc_gzip_level)


@dataclass
class Exchange:
    """What came of one request. ``kind``: ``record`` (``members`` holds the packed response and
    request records; ``links`` the page's links when asked), ``retry`` (a 429 or 5xx that is not
    the last attempt: nothing recorded), ``skip`` (``reason``: too_large, non_html) or ``error``
    (``reason``: connection, timeout)."""

    kind: str
    status: int = 0
    reason: str = ""
    location: str = ""
    retry_after: float | None = None
    body_bytes: int = 0
    links: list[str] = field(default_factory=list)
    members: bytes = b""


class Skip(Exception):
    """A page not recorded, for a counted reason (too_large, non_html)."""


HEADERS = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1", "Accept-Encoding": "gzip, deflate"}


def fetch_exchange(url: str, options: FetchOptions, last_attempt: bool, follow: bool) -> Exchange:
    """GET ``url`` once (no redirect followed, no retry) and pack what is to be recorded.

    ``follow``: extract the links of a 2xx HTML page. A 429 or 5xx is packed only on the
    ``last_attempt``; before that the crawl waits and asks again.
    """
    from urllib.parse import urlsplit

    from lmforge.collect.frontier import parse_retry_after

    headers = {"User-Agent": options.user_agent, **HEADERS}
    got = _get(url, headers, options)
    if isinstance(got, Exchange):  # skipped, or a network error
        return got
    status, protocol, status_line, response_headers, header, body = got
    if status in RETRY_STATUSES and not last_attempt:
        return Exchange("retry", status, retry_after=parse_retry_after(header.get("retry-after", "")))
    parts = urlsplit(url)
    request = ("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
               [("Host", parts.netloc), *headers.items()])
    location = header.get("location", "").strip() if 300 <= status < 400 else ""
    links, members = pack_page(url, request, (protocol, status_line, response_headers, body), not location,
                               follow and 200 <= status < 300 and not location, options.sort_query,
                               options.max_page_bytes * 4, options.gzip_level)
    return Exchange("record", status, location=location, body_bytes=len(body), links=links[:MAX_LINKS],
                    members=members)


def _get(url: str, headers: dict, options: FetchOptions) -> tuple | Exchange:
    """(status, protocol, status line, headers, lower-cased first headers, body) of the answer,
    or an Exchange saying why there is none: a skip, or a network error (only the request and
    the reading are guarded: an error while packing is a bug to report, not a retry)."""
    from urllib3.exceptions import HTTPError

    from lmforge.collect.fetcher import finish

    try:
        resp = client(options).get(url, headers)
        complete = False
        try:
            status = resp.status
            got = [(k, v) for k, v in resp.headers.items() if k.lower() != "transfer-encoding"]
            header = {k.lower(): v for k, v in reversed(got)}  # the first of a repeated header wins
            body, sniff = _check_and_read(resp, status, header, options.max_page_bytes)
            complete = True  # read to the end: the connection goes back to the pool
        finally:
            finish(resp, complete)
    except Skip as why:
        return Exchange("skip", reason=str(why))
    except (HTTPError, OSError) as exc:
        return Exchange("error", reason=network_error_kind(exc))
    if sniff and not _looks_like_html(body):
        return Exchange("skip", reason="non_html")
    protocol = "HTTP/1.0" if resp.version == 10 else "HTTP/1.1"
    return status, protocol, f"{status} {resp.reason or ''}".strip(), got, header, body


def network_error_kind(exc: BaseException) -> str:
    """The cause of a failed request, as counted in the crawl's errors: ``dns_failure``,
    ``connection_refused``, ``connect_timeout``, ``timeout`` (no answer within read_timeout),
    ``tls_error`` or ``connection`` (reset, closed early, anything else)."""
    import socket

    from urllib3.exceptions import (ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError,
                                    ReadTimeoutError, SSLError)

    if isinstance(exc, MaxRetryError) and exc.reason is not None:  # a request made with retries (robots.txt)
        exc = exc.reason
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, (NameResolutionError, socket.gaierror)):
        return "dns_failure"
    if isinstance(exc, ConnectionRefusedError) or isinstance(cause, ConnectionRefusedError) or (
            isinstance(exc, NewConnectionError) and "refused" in str(exc).lower()):
        return "connection_refused"
    if isinstance(exc, NewConnectionError):  # urllib3 files a failed connect under ConnectTimeoutError too
        return "connect_timeout" if isinstance(cause, (socket.timeout, TimeoutError)) else "connection"
    if isinstance(exc, ConnectTimeoutError):
        return "connect_timeout"
    if isinstance(exc, (ReadTimeoutError, socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, SSLError):
        return "tls_error"
    return "connection"


def _check_and_read(resp, status: int, header: dict, max_bytes: int) -> tuple[bytes, bool]:
    """The body, unless type or size rule the page out first (raises Skip); and whether its
    type is unknown, so that the body must show it is HTML."""
    if status in RETRY_STATUSES:  # recorded as it is on the last attempt, whatever its type
        return _read_body(resp, max_bytes), False
    ctype = header.get("content-type", "").split(";")[0].strip().lower()
    redirect = 300 <= status < 400
    if not redirect and ctype and ctype not in HTML_TYPES:
        raise Skip("non_html")
    length = header.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise Skip("too_large")
    return _read_body(resp, max_bytes, length.isdigit()), not redirect and not ctype


def _read_body(resp, max_bytes: int, known_length: bool = False) -> bytes:
    """The raw payload bytes as sent (content-encoding kept), stopping past ``max_bytes``."""
    if known_length:  # checked against the limit: one read (http.client stops at the length)
        return resp.read(decode_content=False)
    chunks, size = [], 0
    for chunk in resp.stream(65536, decode_content=False):
        size += len(chunk)
        if size > max_bytes:
            raise Skip("too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def pack_page(url: str, request: tuple, response: tuple, page: bool, follow: bool, sort_query: bool,
              max_payload: int, level: int) -> tuple[list[str], bytes]:
    """The CPU work on a fetched exchange: charset, links (when ``follow``) and the packed WARC
    records (response, then request)."""
    from lmforge.collect.charset import detect_charset
    from lmforge.collect.readers import decode_content_encoding
    from lmforge.collect.urls import page_links
    from lmforge.collect.warcout import pack_exchange

    protocol, status_line, headers, body = response
    charset, links = None, []
    if page:
        header = {k.lower(): v for k, v in reversed(headers)}  # the first of a repeated header wins
        payload = decode_content_encoding(body, header.get("content-encoding"), max_payload)
        charset = detect_charset(payload, _header_charset(header.get("content-type", "")))
        if follow:
            links = page_links(payload, url, charset, sort_query)
    extra = {"WARC-Identified-Content-Charset": charset} if charset else {}
    return links, pack_exchange(url, request, response, extra, level)


_CLIENT: dict = {}
_CLIENT_LOCK = threading.Lock()


def client(options: FetchOptions):
    """This process's urllib3 client (keep-alive pools) for ``options``; a forked helper makes
    its own rather than share the parent's sockets."""
    from lmforge.collect.fetcher import Client

    key = (os.getpid(), options.per_host_connections, options.connect_timeout, options.read_timeout)
    if key not in _CLIENT:
        with _CLIENT_LOCK:
            if key not in _CLIENT:
                close_clients()
                _CLIENT[key] = Client(options.per_host_connections, (options.connect_timeout, options.read_timeout))
    return _CLIENT[key]


def close_clients() -> None:
    """Close this process's kept connections (at the end of a crawl)."""
    for key in list(_CLIENT):
        if key[0] == os.getpid():
            _CLIENT.pop(key).clear()
        else:  # a parent's, copied by fork: its sockets are the parent's to close
            del _CLIENT[key]


def _header_charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset":
            return value.strip("\"' ") or None
    return None


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<!--", b"<title", b"<p"))
