"""max_seconds is a deadline that retries and their waits respect, and a host that does not answer
is counted as an error with its cause, not as blocked by robots.txt."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from lmforge.collect.config import CollectConfig
from lmforge.collect.crawl import crawl


class SilentServer:
    """Accepts connections and never answers (a hung server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def test_retries_and_waits_end_at_the_deadline(tmp_path, silent):
    # Before: 4 attempts of 1.5 s each plus backoff waits of up to 2 s: 6-10 s for max_seconds = 2.
    cfg = CollectConfig(max_seconds=2.0, read_timeout=1.5, connect_timeout=1.0, retries=3, backoff_base=1.0,
                        obey_robots=False, per_host_delay=0, concurrency=1, helper_processes=0)
    t0 = time.monotonic()
    stats = crawl(cfg, tmp_path, [silent.base + "/"], progress=False)
    seconds = time.monotonic() - t0
    assert seconds < cfg.max_seconds + cfg.read_timeout + 1.0, f"{seconds:.1f} s for max_seconds = 2"
    assert stats["fetched"] == 0 and stats["robots_blocked"] == 0
    # the page either timed out on its last allowed attempt or was given back for a rerun
    assert stats["errors"].get("timeout", 0) + stats["pending"] == 1


def test_a_hung_robots_txt_is_a_timeout_error(tmp_path, silent):
    cfg = CollectConfig(max_seconds=10, read_timeout=0.5, connect_timeout=0.5, per_host_delay=0, helper_processes=0)
    stats = crawl(cfg, tmp_path, [silent.base + "/"], progress=False)
    assert stats["robots_blocked"] == 0 and stats["errors"] == {"timeout": 1}


@pytest.mark.parametrize("obey_robots", [True, False])
def test_a_refused_connection_is_an_error_with_its_cause(tmp_path, obey_robots):
    cfg = CollectConfig(obey_robots=obey_robots, retries=1, backoff_base=0.01, per_host_delay=0, helper_processes=0)
    stats = crawl(cfg, tmp_path, [f"http://127.0.0.1:{closed_port()}/"], progress=False)
    assert stats["robots_blocked"] == 0 and stats["fetched"] == 0
    assert stats["errors"] == {"connection_refused": 1}


def test_network_error_kinds():
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ReadTimeoutError

    from lmforge.collect.exchange import network_error_kind

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    assert network_error_kind(refused) == "connection_refused"
    assert network_error_kind(MaxRetryError(None, "/robots.txt", refused)) == "connection_refused"
    assert network_error_kind(NameResolutionError("x.invalid", None, socket.gaierror(-2, "unknown"))) == "dns_failure"
    assert network_error_kind(ReadTimeoutError(None, "/", "read timed out")) == "timeout"
    assert network_error_kind(ConnectionResetError()) == "connection"
