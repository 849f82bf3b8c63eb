"""robots.txt per host (RFC 9309), fetched once and cached; parsed by protego."""

from __future__ import annotations

import threading

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 2.5: crawlers must parse at least 500 KiB
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects


class RobotsCache:
    """``allowed(url)`` and ``delay(host)`` for each ``scheme://host``, fetching robots.txt on first use.

    RFC 9309 2.3.1: a 4xx answer means no rules (all allowed); a 5xx answer or no answer at all
    means the site is unreachable, so everything on it is disallowed. When there was no answer,
    :meth:`failure` names the cause (``connection_refused``, ``dns_failure``, ``timeout``...):
    the crawl counts such a page as an error, not as blocked by robots.txt.
    """

    def __init__(self, user_agent: str, obey: bool = True):
        self.user_agent, self.obey = user_agent, obey  # timeouts are the client's (fetcher.Client)
        self._rules: dict[str, object] = {}
        self._failures: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def rules(self, host: str, client) -> object:
        """The parsed robots.txt of ``host`` (``None``: allow all, ``False``: disallow all)."""
        if host in self._rules:
            return self._rules[host]
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        with lock:  # one fetch per host even when many threads ask at once
            if host not in self._rules:
                self._rules[host] = self._fetch(host, client) if self.obey else None
        return self._rules[host]

    def _fetch(self, host: str, client):
        """``client`` is a :class:`lmforge.collect.fetcher.Client`."""
        from protego import Protego
        from urllib3.exceptions import HTTPError

        from lmforge.collect.exchange import network_error_kind
        from lmforge.collect.fetcher import finish

        try:
            resp = client.get(f"{host}/robots.txt", {"User-Agent": self.user_agent, "Accept-Encoding": "gzip, deflate"},
                              redirects=ROBOTS_MAX_REDIRECTS)
            try:
                body = resp.read(ROBOTS_MAX_BYTES, decode_content=True)
            finally:
                finish(resp, complete=False)
        except (HTTPError, OSError) as exc:
            self._failures[host] = network_error_kind(exc)
            return False
        if resp.status >= 500:
            return False
        if resp.status >= 400 or resp.status < 200:
            return None
        return Protego.parse(body.decode("utf-8", errors="replace"))

    def allowed(self, url: str, host: str, client) -> bool:
        rules = self.rules(host, client)
        if rules is None or url.endswith("/robots.txt"):
            return True
        return bool(rules) and rules.can_fetch(url, self.user_agent)

    def failure(self, host: str) -> str | None:
        """Why robots.txt of ``host`` got no answer at all (a network error), None if it did."""
        return self._failures.get(host)

    def delay(self, host: str) -> float:
        """The Crawl-delay robots.txt asks of us, 0 when none (or not fetched yet)."""
        rules = self._rules.get(host)
        if not rules:
            return 0.0
        return float(rules.crawl_delay(self.user_agent) or 0.0)
