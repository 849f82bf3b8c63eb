"""Scheduling for the crawler: which URL goes next, so each host gets its share and its rest.

A :class:`Frontier` holds the waiting URLs per host and hands one out only when its host has a
free connection (per-host concurrency) and has rested since its last request (per-host delay,
raised by robots.txt Crawl-delay). Retries wait with exponential backoff and jitter, or for as
long as the server's Retry-After asks.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from lmforge.collect.urls import host_of


@dataclass
class Item:
    url: str
    depth: int
    chain: tuple = ()
    """URLs of the redirect hops that led here (to stop loops)."""
    prev_time: float = 0.0



class Frontier:
    """URLs waiting, per host; ``take`` hands out one whose host is free and rested, or waits."""

    def __init__(self, per_host_concurrency: int, default_delay: float):
        self.cond = threading.Condition()
        self.queues: dict[str, deque] = {}
        self.active: Counter = Counter()
        self.next_time: dict[str, float] = {}
        self.last_start: dict[str, float] = {}
        self.delays: dict[str, float] = {}
        self.per_host, self.default_delay = per_host_concurrency, default_delay
        self.in_flight = 0
        self.stopped = False
        self._stop = threading.Event()

    def push(self, item: Item) -> None:
        with self.cond:
            self.queues.setdefault(host_of(item.url), deque()).append(item)
            self.cond.notify()

    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def take(self, budget_left) -> Item | None:
        """The next URL to fetch; None when the crawl is over (empty, stopped or out of budget)."""
        with self.cond:
            while not self.stopped:
                wait = None
                if budget_left(self.in_flight):
                    item, wait = self._ready()
                    if item is not None:
                        return item
                    if wait is None and not self.queues and self.in_flight == 0:
                        return None
                elif self.in_flight == 0:
                    return None
                self.cond.wait(timeout=wait if wait is None else max(wait, 0.001))
            return None

    def _ready(self) -> tuple[Item | None, float | None]:
        now, wait = time.monotonic(), None
        for host in list(self.queues):
            queue = self.queues[host]
            if not queue:
                del self.queues[host]
                continue
            if self.active[host] >= self.per_host:
                continue
            at = self.next_time.get(host, 0.0)
            if at > now:
                wait = at - now if wait is None else min(wait, at - now)
                continue
            item = queue.popleft()
            self.queues[host] = self.queues.pop(host)  # round robin: this host goes last
            item.prev_time = at
            self.active[host] += 1
            self.in_flight += 1
            self.last_start[host] = now
            self.next_time[host] = now + self.delays.get(host, self.default_delay)
            return item, None
        return None, wait

    def set_delay(self, host: str, delay: float) -> None:
        """The host's delay, once robots.txt is known; called just before a request to it, so
        the next one waits ``delay`` from now (not from when this one was taken: fetching
        robots.txt took some of that time)."""
        with self.cond:
            if self.delays.get(host) != delay:
                self.delays[host] = delay
                self.next_time[host] = max(self.next_time.get(host, 0.0), time.monotonic() + delay)

    def reserve(self, host: str) -> float:
        """Book the host's next turn for a retry; return the seconds to wait for it."""
        with self.cond:
            now = time.monotonic()
            at = max(now, self.next_time.get(host, 0.0))
            self.next_time[host] = self.last_start[host] = at
            self.next_time[host] = at + self.delays.get(host, self.default_delay)
            return at - now

    def release(self, item: Item, requested: bool) -> None:
        host = host_of(item.url)
        with self.cond:
            self.active[host] -= 1
            self.in_flight -= 1
            if not requested:  # nothing was sent: give the host its turn back
                self.next_time[host] = item.prev_time
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self._stop.set()
            self.cond.notify_all()

    def wait_stopped(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the crawl stops meanwhile; return whether it stopped."""
        return self._stop.wait(max(seconds, 0.0))


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter")."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    import email.utils

    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when else None
