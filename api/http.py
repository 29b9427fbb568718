"""HTTP plumbing of the REST service: routes, request decoding, signatures, errors, CORS.

Every request takes the same path (:func:`build_app`): a token of its IP's
rate limit (``[limits] connection_rate``/``connection_burst``; 429 -1003 with
``Retry-After``), its parameters from the raw query string and form body
(``api.params``), for a signed endpoint the account it proves
(``api.auth``), then the endpoint's handler, whose result is encoded as
JSON. Errors become Binance's ``{"code", "msg"}`` bodies here and only here:
a ``BinanceError`` as it is, a ``StreamexError`` through
``api.errors.from_streamex``, aiohttp's own refusals (404 unknown path, 405
method, 413 body over :data:`MAX_BODY`) with a Binance code, and anything
unexpected as 500 -1000 with the details logged, never sent. Nothing is
logged per request (query strings carry signatures; headers the API keys).

CORS: the project's web page (served by the market-data service) may call
the GET endpoints with ``X-MBX-APIKEY``; its origin is answered
``Access-Control-Allow-Origin`` and preflights (``OPTIONS``) are answered
204. Cost per request: one token bucket, one parse of the parameters, one
HMAC when signed, one JSON encode.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import NamedTuple

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler as WebHandler
from aiohttp.typedefs import Middleware

from api.auth import API_KEY_HEADER, authenticate
from api.context import ApiContext, ApiRequest, Handler
from api.errors import (
    ILLEGAL_CHARS,
    TOO_MANY_REQUESTS,
    UNKNOWN,
    UNSUPPORTED_OPERATION,
    BinanceError,
    from_streamex,
)
from api.params import Params, signature_payload
from contract.errors import StreamexError
from contract.ratelimit import TokenBucket

log = logging.getLogger("streamex.api")

MAX_BODY = 65_536
"""Largest request body accepted (413 beyond), as the websocket gateway's frame limit."""
MAX_BUCKETS = 10_000
"""IP buckets kept; beyond, the full ones are dropped."""
_encode = msgspec.json.Encoder().encode
_BODY_METHODS = frozenset({"POST", "PUT", "DELETE"})


class Route(NamedTuple):
    """One endpoint: method, path, handler, and whether it is SIGNED."""

    method: str
    path: str
    handler: Handler
    signed: bool = False


def json_response(body: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encode(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(exc: BinanceError) -> web.Response:
    headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return json_response(exc.body(), exc.status, headers)


class _IpLimits:
    """One token bucket per client address."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, TokenBucket] = {}

    def check(self, ip: str) -> None:
        now = time.monotonic()
        bucket = self.buckets.get(ip)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self.buckets[ip] = TokenBucket(self.rate, self.burst, now)
        if not bucket.take(now):
            retry_ms = bucket.retry_after_ms(now)
            raise BinanceError(
                TOO_MANY_REQUESTS,
                f"Too much request weight used; current limit is {int(bucket.rate)} request "
                f"weight per 1 SECOND (burst {int(bucket.burst)}). Please use WebSocket "
                f"Streams for live updates to avoid polling the API. (retry in "
                f"{retry_ms / 1000:.3f} s)", status=429,
                retry_after_s=max(1, math.ceil(retry_ms / 1000)))

    def _prune(self, now: float) -> None:
        """Forget the buckets that are full again (their clients are idle)."""
        for ip, bucket in list(self.buckets.items()):
            if bucket.retry_after_ms(now, int(bucket.burst)) == 0:
                del self.buckets[ip]
        if len(self.buckets) >= MAX_BUCKETS:
            self.buckets.clear()


def build_app(ctx: ApiContext, routes: Iterable[Route],
              cors_origins: Iterable[str] = (),
              outer: Iterable[Middleware] = ()) -> web.Application:
    """The aiohttp application serving ``routes`` with ``ctx``; ``outer`` middlewares run
    around everything (the metrics' request counting)."""
    limits = ctx.config.limits
    ip_limits = _IpLimits(limits.connection_rate, limits.connection_burst)
    origins = frozenset(cors_origins)
    accounts = ctx.config.accounts_by_api_key
    max_recv_window = ctx.config.api.max_recv_window_ms

    def endpoint(route: Route) -> WebHandler:
        handler, signed = route.handler, route.signed

        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                ip_limits.check(request.remote or "")
                query = request.rel_url.raw_query_string
                body = ""
                if request.method in _BODY_METHODS and request.can_read_body:
                    try:
                        body = (await request.read()).decode("utf-8")
                    except UnicodeDecodeError:
                        raise BinanceError(ILLEGAL_CHARS, "Illegal characters found in a "
                                           "parameter. (the body is not UTF-8)") from None
                params = Params.parse(query, body)
                account = None
                if signed:
                    payload, signature = signature_payload(query, body)
                    account = authenticate(accounts, request.headers.get(API_KEY_HEADER),
                                           params, payload, signature, ctx.now_ms(),
                                           max_recv_window)
                # The views as of this request, even if the router was pausing its reads.
                await ctx.gateway.router.caught_up()
                result = await handler(ctx, ApiRequest(params, account))
                return json_response(result)
            except BinanceError as exc:
                return error_response(exc)
            except StreamexError as exc:
                return error_response(from_streamex(exc))
            except web.HTTPRequestEntityTooLarge:
                return error_response(BinanceError(
                    UNSUPPORTED_OPERATION, f"Request body too large (at most {MAX_BODY} "
                    "bytes).", status=413))
            except Exception:
                log.exception("%s %s failed", request.method, request.rel_url.path)
                return error_response(BinanceError(
                    UNKNOWN, "An unknown error occurred while processing the request.",
                    status=500))

        return serve

    @web.middleware
    async def cors_and_routing(request: web.Request, handler: WebHandler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and origin in origins
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204 if allowed else 403)
        else:
            try:
                response = await handler(request)
            except web.HTTPNotFound:
                response = error_response(BinanceError(
                    UNSUPPORTED_OPERATION, "This operation is not supported. (no such "
                    "endpoint)", status=404))
            except web.HTTPMethodNotAllowed:
                response = error_response(BinanceError(
                    UNSUPPORTED_OPERATION, "This operation is not supported. (method not "
                    "allowed on this endpoint)", status=405))
        if allowed:
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET"
                response.headers["Access-Control-Allow-Headers"] = (
                    f"{API_KEY_HEADER}, Content-Type")
                response.headers["Access-Control-Max-Age"] = "600"
        return response

    app = web.Application(client_max_size=MAX_BODY,
                          middlewares=[*outer, cors_and_routing])
    for route in routes:
        app.router.add_route(route.method, route.path, endpoint(route))
    return app

