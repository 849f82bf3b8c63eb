"""The demo websites: folders of HTML served on 127.0.0.1, for a crawl that needs no internet.

The demo site is Debian's python3-doc HTML. Its robots.txt keeps the crawler on the prose pages:
``/_sources/`` (reST copies of each page), ``/_static/``, ``/_images/`` and ``/_downloads/`` are
disallowed, and ``/genindex-all.html`` (a 600 KB index of names) as well, since none of them is
text worth training on.

``[[collect.local_sites]]`` serves more folders the same way, each on a port of its own (so a
host of its own, with its own robots.txt and politeness). A folder without ``index.html`` gets a
generated one at ``/`` that links every HTML page under it, as a sitemap would: LibreOffice's
help, for one, builds its table of contents with JavaScript, which a crawler does not run.
"""

from __future__ import annotations

import contextlib
import glob
import html
import http.server
import io
import threading
from functools import partial
from pathlib import Path
from typing import Iterator, NamedTuple

from lmforge.errors import LmforgeError

ROBOTS_TXT = b"""User-agent: *
Disallow: /_sources/
Disallow: /_static/
Disallow: /_images/
Disallow: /_downloads/
Disallow: /genindex-all.html
"""
SITE_ROBOTS_TXT = b"User-agent: *\nDisallow:\n"
"""robots.txt of a local site without one of its own: everything may be fetched."""
MAX_INDEX_LINKS = 100_000
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

    def __init__(self, *args, robots: bytes = ROBOTS_TXT, **kwargs):
        self.robots = robots
        super().__init__(*args, **kwargs)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/robots.txt":
            self._send(self.robots, "text/plain")
            return
        if path == "/" and not (Path(self.directory) / "index.html").is_file():
            self._send(site_index(Path(self.directory)), "text/html; charset=utf-8")
            return
        super().do_GET()

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # quiet: the crawler has its own progress bar
        pass


DEMO_PORT = 8613
"""Where a run's demo site is served when the port is free: the page URLs, which key the
train/val split, are then the same in every run of the demo."""


class DemoServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def site_index(root: Path) -> bytes:
    """A page linking every ``*.html`` under ``root`` (sorted; at most MAX_INDEX_LINKS)."""
    out = io.StringIO()
    out.write("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index</title></head><body><ul>\n")
    for i, path in enumerate(sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html"))):
        if i == MAX_INDEX_LINKS:
            break
        out.write(f'<li><a href="{html.escape(path)}">{html.escape(path)}</a></li>\n')
    out.write("</ul></body></html>\n")
    return out.getvalue().encode("utf-8")


@contextlib.contextmanager
def serve_demo(root: str | Path | None = None, port: int = 0, state_dir: Path | None = None,
               site: int = 0, robots: bytes = ROBOTS_TXT) -> Iterator[str]:
    """Serve ``root`` (python3-doc by default) on 127.0.0.1; yield its base URL ``http://127.0.0.1:PORT``.

    With ``state_dir`` (a run's crawl), the port is DEMO_PORT + ``site`` when free, and is
    remembered there and reused, so a resumed crawl finds its queued URLs at the same address.
    """
    root = Path(root) if root else find_demo_root()
    if not root.is_dir():
        raise LmforgeError(f"demo_root {root}: no such folder" if site == 0 else
                           f"collect.local_sites root {root}: no such folder; fix the path, or for "
                           "configs/demo-ko.toml's Korean sites run `make korean-help`")
    port_file = state_dir / ("demo_port" if site == 0 else f"demo_port_{site}") if state_dir else None
    if port == 0 and port_file is not None:
        port = int(port_file.read_text() or 0) if port_file.exists() else DEMO_PORT + site
    server = _bind(root, port, robots)
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


class ServedSite(NamedTuple):
    base: str
    """``http://127.0.0.1:PORT/``: every URL of the site starts with it."""
    seed: str
    source: str
    """The clean stage's source name for the site's pages."""


@contextlib.contextmanager
def serve_sites(cfg, state_dir: Path | None = None) -> Iterator[list[ServedSite]]:
    """Serve the demo site (when ``cfg.serve_demo``; source 'web') and every ``cfg.local_sites``
    folder, each on its own port, until the block ends."""
    with contextlib.ExitStack() as stack:
        sites = []
        if cfg.serve_demo:
            base = stack.enter_context(serve_demo(cfg.demo_root or None, state_dir=state_dir)) + "/"
            sites.append(ServedSite(base, base, "web"))
        for i, site in enumerate(cfg.local_sites, 1):
            own = Path(site.root) / "robots.txt"
            robots = own.read_bytes() if own.is_file() else SITE_ROBOTS_TXT
            base = stack.enter_context(serve_demo(site.root, state_dir=state_dir, site=i, robots=robots)) + "/"
            sites.append(ServedSite(base, base + site.start.lstrip("/"), site.source or Path(site.root).resolve().name))
        yield sites


def _bind(root: Path, port: int, robots: bytes = ROBOTS_TXT) -> DemoServer:
    handler = partial(_Handler, directory=str(root), robots=robots)
    try:
        return DemoServer(("127.0.0.1", port), handler)
    except OSError:
        return DemoServer(("127.0.0.1", 0), handler)  # the port is taken: any free one
