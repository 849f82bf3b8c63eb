"""`lmforge serve [RUNS_DIR_OR_RUN]`: the runs in the browser."""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys

from lmforge.errors import LmforgeError

INSTALL_HINT = "lmforge serve needs the serve extra: pip install 'lmforge[serve]' (fastapi, uvicorn)"


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="browse runs: data, tokenizer, training curves, a playground")
    p.add_argument("path", nargs="?", default="runs", help="a runs folder or one run (default: runs)")
    p.add_argument("--port", type=int, default=8600, help="port (default 8600)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; the app has no authentication)")
    p.add_argument("--max-generations", type=int, default=2, metavar="N",
                   help="playground generations at once; more wait their turn (default 2)")
    p.set_defaults(func=_cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cmd_serve(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise LmforgeError(INSTALL_HINT) from None
    from lmforge.serve.app import create_app

    if not 0 < args.port < 65536:
        raise LmforgeError(f"--port {args.port}: give a port in 1..65535")
    if args.max_generations < 1:
        raise LmforgeError("--max-generations must be at least 1")
    app = create_app(args.path, max_generations=args.max_generations)
    check_can_listen(args.host, args.port)
    if not is_loopback(args.host):
        print(f"lmforge: warning: serving on {args.host}: anyone who can reach this address can read the runs and "
              "use the playground (the app has no authentication); use --host 127.0.0.1 to keep it local",
              file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"lmforge serve: {app.state.folder.root} on http://{shown}:{args.port}/  (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once before the server does, so that a port in use or a host that is not
    this machine's is one line naming the fix rather than the server's own log and exit."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise LmforgeError(f"--host {host}: not an address this machine has ({exc}); use 127.0.0.1 (the default)") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port in TIME_WAIT is free
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LmforgeError(f"port {port} of {host} is in use (another lmforge serve?); "
                                   "stop it or pick another port with --port") from None
            raise LmforgeError(f"cannot listen on {host} port {port} ({exc.strerror}); "
                               "use --host 127.0.0.1 and a --port above 1023") from None
