"""``/metrics``, ``/healthz`` and ``/readyz``: one answer function and two ways to serve it.

- :func:`answer` maps a request path to ``(status, content type, body)``, or
  None for any other path; every server below uses it.
- :func:`websocket_hook` plugs it into a websockets server's
  ``process_request`` (the gateway and market data answer on their own
  port), falling through to another hook (market data's static files).
- :class:`MetricsServer` serves it on a port of its own from a daemon thread
  (``http.server``): the engines, risk engines and history, whose main
  loops never wait on it. A scrape runs the registry's collectors on that
  thread.

The endpoints answer GET (and HEAD) only and never echo input. They
carry no secret; like every listener they bind to loopback unless the
configuration says otherwise.
"""

from __future__ import annotations

import http
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ops.health import Health
from ops.metrics import exposition

PATHS = ("/metrics", "/healthz", "/readyz")
TEXT = "text/plain; charset=utf-8"


def answer(path: str, registry: CollectorRegistry, health: Health
           ) -> tuple[int, str, bytes] | None:
    """The answer to ``GET path`` (query string ignored), or None when it is not ours."""
    path = path.split("?", 1)[0]
    if path == "/metrics":
        body, content_type = exposition(registry)
        return 200, content_type, body
    if path == "/healthz":
        return 200, TEXT, b"ok\n"
    if path == "/readyz":
        failed = health.failures()
        if not failed:
            return 200, TEXT, b"ready\n"
        lines = "".join(f"{name}: {reason}\n" for name, reason in sorted(failed.items()))
        return 503, TEXT, f"not ready\n{lines}".encode()
    return None


Hook = Callable[[ServerConnection, Request], Response | None]


def websocket_hook(registry: CollectorRegistry, health: Health,
                   fallback: Hook | None = None) -> Hook:
    """A websockets ``process_request`` hook: the three paths (plain HTTP GETs, not
    websocket handshakes) are answered here, anything else goes to ``fallback`` (or
    through to the websocket handshake when there is none)."""

    def hook(connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            got = answer(request.path, registry, health)
            if got is not None:
                status, content_type, body = got
                phrase = http.HTTPStatus(status).phrase
                headers = Headers([("Content-Type", content_type),
                                   ("Content-Length", str(len(body))),
                                   ("Cache-Control", "no-store")])
                return Response(status, phrase, headers, body)
        return fallback(connection, request) if fallback is not None else None

    return hook


def ops_hook(registry: CollectorRegistry | None, health: Health,
             fallback: Hook | None = None) -> Hook:
    """:func:`websocket_hook` when metrics are on (``registry``); without a registry only
    ``/healthz`` and ``/readyz`` are answered and ``/metrics`` goes to ``fallback``."""
    if registry is not None:
        return websocket_hook(registry, health, fallback)
    inner = websocket_hook(CollectorRegistry(auto_describe=True), health, fallback)

    def hook(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == "/metrics":
            return fallback(connection, request) if fallback is not None else None
        return inner(connection, request)

    return hook


def metrics_url(host: str, port: int) -> str:
    """``http://HOST:PORT/metrics`` (an IPv6 host in brackets)."""
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/metrics"


class MetricsServer:
    """The three endpoints on ``host:port`` (0: any free port) from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int
                 ) -> None:
        self.registry = registry
        self.health = health
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "streamex"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(with_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(with_body=False)

            def _answer(self, with_body: bool) -> None:
                got = answer(self.path, outer.registry, outer.health)
                status, content_type, body = got or (404, TEXT, b"404 not found\n")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # scrapes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> MetricsServer:
        """Serve from a daemon thread; returns self. O(1)."""
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the socket (waits for the thread's loop to end)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
