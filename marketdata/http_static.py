"""Serve the trading web page (``marketdata/static``) from the market-data port.

Hook :func:`process_request` into ``websockets.asyncio.server.serve(...,
process_request=process_request)``: a websocket handshake passes through to
the feed (it returns None), any other GET gets a file from ``static/`` (``/``
is ``index.html``) or a 404. Only regular files directly known by extension
are served; no directory listing, no path outside ``static/``. Responses carry
``Cache-Control: no-cache`` so a browser revalidates after an upgrade. Files
are small and read per request (one ``stat`` + ``read``, O(file size)).
"""

from __future__ import annotations

import email.utils
import http
from pathlib import Path
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}


def is_websocket_handshake(request: Request) -> bool:
    """True when the request asks to upgrade to a websocket (``Upgrade: websocket``)."""
    return any(
        token.strip().lower() == "websocket"
        for value in request.headers.get_all("Upgrade")
        for token in value.split(",")
    )


def resolve_static(path: str, root: Path = STATIC_DIR) -> Path | None:
    """The file under ``root`` that the request target ``path`` names, or None.

    ``/`` and a trailing ``/`` mean ``index.html``; the query string is
    ignored; percent-escapes are decoded before checking, so ``%2e%2e`` is
    refused like ``..``. Returns None for anything outside ``root``, hidden
    names, unknown extensions and missing files.
    """
    target = unquote(path.split("?", 1)[0].split("#", 1)[0])
    if "\\" in target or "\0" in target:
        return None
    parts = [p for p in target.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    if not parts or target.endswith("/"):
        parts.append("index.html")
    candidate = root.joinpath(*parts)
    if candidate.suffix not in CONTENT_TYPES:
        return None
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        return None
    return resolved


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def static_response(path: str, root: Path = STATIC_DIR) -> Response:
    """200 with the file's bytes and Content-Type, or a plain-text 404. O(file size)."""
    file = resolve_static(path, root)
    if file is not None:
        try:
            body = file.read_bytes()
        except OSError:
            pass
        else:
            return _response(http.HTTPStatus.OK, body, CONTENT_TYPES[file.suffix])
    return _response(http.HTTPStatus.NOT_FOUND, b"404 not found\n", "text/plain; charset=utf-8")


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    """websockets' ``process_request`` hook: None lets a handshake through, else a file."""
    if is_websocket_handshake(request):
        return None
    return static_response(request.path)
