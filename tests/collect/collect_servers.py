"""Local HTTP servers (127.0.0.1 only) that misbehave on purpose, for the crawler tests."""

from __future__ import annotations

import http.server
import threading
import time


class LoggingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.log: list[tuple[float, str]] = []  # (time, path) of every request received
        self.done: list[str] = []  # paths whose answer was sent completely
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):  # a client that hung up is expected here
        pass

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict = {}  # path -> callable(handler) or (status, headers, body)

    def do_GET(self):
        with self.server.lock:
            self.server.log.append((time.monotonic(), self.path))
        page = self.pages.get(self.path)
        if page is None:
            self.reply(404, {"Content-Type": "text/html"}, b"<html>not found</html>")
        elif callable(page):
            page(self)
        else:
            self.reply(*page)
        with self.server.lock:
            self.server.done.append(self.path)

    def reply(self, status, headers, body=b""):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start(pages: dict) -> LoggingServer:
    handler = type("H", (Handler,), {"pages": pages})
    server = LoggingServer(handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def html(body: str, charset: str | None = "utf-8", encoding: str = "utf-8", status: int = 200):
    ctype = f"text/html; charset={charset}" if charset else "text/html"
    return (status, {"Content-Type": ctype}, f"<html><body>{body}</body></html>".encode(encoding))
