"""The demo website: Debian's python3-doc HTML served on 127.0.0.1, for a crawl that needs no internet.

Its robots.txt keeps the crawler on the prose pages: ``/_sources/`` (reST copies of each page),
``/_static/``, ``/_images/`` and ``/_downloads/`` are disallowed, and ``/genindex-all.html`` (a
600 KB index of names) as well, since none of them is text worth training on.
"""

from __future__ import annotations

import contextlib
import glob
import http.server
import threading
from functools import partial
from pathlib import Path
from typing import Iterator

from lmforge.errors import LmforgeError

ROBOTS_TXT = b"""User-agent: *
Disallow: /_sources/
Disallow: /_static/
Disallow: /_images/
Disallow: /_downloads/
Disallow: /genindex-all.html
"""
CANDIDATES = ("/usr/share/doc/python3/html", "/usr/share/doc/python3.*/html", "/usr/share/doc/python3-doc/html")


def find_demo_root() -> Path:
    """The installed python3-doc HTML folder; raise with the install command when there is none."""
    for pattern in CANDIDATES:
        for found in sorted(glob.glob(pattern), reverse=True):
            if (Path(found) / "index.html").is_file():
                return Path(found)
    raise LmforgeError("the demo site needs Debian's python3-doc HTML (not found under /usr/share/doc/python3*/html); "
                       "install it with: apt-get install python3-doc  (or set collect.demo_root to a folder of HTML)")


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real web server would
    # TCP_NODELAY, as nginx sets on keep-alive connections: without it Nagle + delayed ACK
    # stall every answer (headers and body are two writes) by up to 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.split("?")[0] == "/robots.txt":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(ROBOTS_TXT)))
            self.end_headers()
            self.wfile.write(ROBOTS_TXT)
            return
        super().do_GET()

    def log_message(self, format, *args):  # quiet: the crawler has its own progress bar
        pass


DEMO_PORT = 8613
"""Where a run's demo site is served when the port is free: the page URLs, which key the
train/val split, are then the same in every run of the demo."""


class DemoServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def serve_demo(root: str | Path | None = None, port: int = 0, state_dir: Path | None = None) -> Iterator[str]:
    """Serve ``root`` (python3-doc by default) on 127.0.0.1; yield its base URL ``http://127.0.0.1:PORT``.

    With ``state_dir`` (a run's crawl), the port is DEMO_PORT when free, and is remembered there
    and reused, so a resumed crawl finds its queued URLs at the same address.
    """
    root = Path(root) if root else find_demo_root()
    if not root.is_dir():
        raise LmforgeError(f"demo_root {root}: no such folder")
    port_file = state_dir / "demo_port" if state_dir else None
    if port == 0 and port_file is not None:
        port = int(port_file.read_text() or 0) if port_file.exists() else DEMO_PORT
    server = _bind(root, port)
    if port_file is not None:
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.write_text(str(server.server_port))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _bind(root: Path, port: int) -> DemoServer:
    handler = partial(_Handler, directory=str(root))
    try:
        return DemoServer(("127.0.0.1", port), handler)
    except OSError:
        return DemoServer(("127.0.0.1", 0), handler)  # the port is taken: any free one
