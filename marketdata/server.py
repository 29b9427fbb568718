"""The market-data websocket server: subscriptions, fan-out, heartbeats, slow consumers.

Channels (PROTOCOL.md): ``book`` (snapshot, then chained updates), ``trades``
(a snapshot of the last trades, then updates), ``ticker`` (snapshot, then
updates) and ``candles`` per interval (a snapshot of the last candles, then
updates).

A thin driver around the sans-I/O parts: :mod:`marketdata.requests` parses
frames, :class:`marketdata.feed.MarketFeed` builds (and encodes once) every
message, :class:`marketdata.outbox.Outbox` queues a connection's frames.

Fan-out (:meth:`FeedServer.publish`) never waits. Each message is framed once
(server frames are unmasked and uncompressed, so the bytes are the same for
every subscriber). A connection with nothing queued and room in its transport
buffer (below websockets' ``write_limit``) gets the frame written at once;
otherwise the payload goes into its outbox and that connection's writer task
sends it with ``await ws.send`` (which waits for the buffer to drain). So a
slow socket stalls only its own writer, never the fan-out, the stream reader or
the engine; its outbox fills up and the slow-consumer policy decides: resync
with fresh snapshots, or close with 1008 ``slow consumer``.

Replies take the same path as pushes, so a reply is always written before the
pushes its request caused (e.g. a subscription's snapshot).

Requests: every frame takes a token from its connection's bucket
(:data:`REQUEST_RATE` per second, burst :data:`REQUEST_BURST`, the gateway's
connection defaults); a frame beyond it is answered ``RATE_LIMITED`` with
``retry_after_ms``. Every frame gets exactly one reply and the connection
stays open: a refusal is its error reply, and an unexpected exception while
handling a frame is logged once and answered ``INTERNAL`` (never a 1011 close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from contract import errors
from contract.errors import StreamexError
from contract.market import Market
from contract.market_data import DEPTHS, SubscriptionParams, heartbeat
from contract.ratelimit import TokenBucket, rate_limited
from contract.wire import RequestError, decode_envelope, error_frame, error_frame_of, result_frame
from marketdata import http_static
from marketdata.feed import Batch, MarketFeed
from marketdata.metrics import OK, UNKNOWN_METHOD
from marketdata.outbox import DEFAULT_LIMIT, DEFAULT_RESYNC_WINDOW_S, Outbox, Overflow
from marketdata.requests import METHODS as MD_METHODS
from marketdata.requests import Request as MdRequest
from marketdata.requests import parse_request
from ops.health import Health
from ops.http import Hook, ops_hook

log = logging.getLogger("streamex.marketdata")

MAX_FRAME = 64 * 1024
"""Largest accepted incoming frame; a bigger one closes the connection with 1009."""
WRITE_LIMIT = 64 * 1024
"""High-water mark of each connection's transport buffer (websockets ``write_limit``)."""
HEARTBEAT_S = 1.0
HEARTBEAT_TICK_S = 0.1
SLOW_CLOSE_TIMEOUT_S = 5.0
"""How long a slow consumer's 1008 close may wait for its buffers to drain before abort."""
WRITER_YIELD_EVERY = 64
SNDBUF = 128 * 1024
"""Kernel send buffer per connection (SO_SNDBUF): bounds what a stalled peer holds in
kernel memory, so a slow consumer reaches its outbox limit instead of buffering MBs."""
REQUEST_RATE = 1000.0
"""Requests per second a connection may send (token bucket refill; the gateway's default)."""
REQUEST_BURST = 2000
"""Requests a connection may send at once (token bucket size; the gateway's default)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, unfragmented websocket text frame (RFC 6455 5.2). O(len)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class Connection:
    """One subscriber connection: its outbox, writer wake-up and subscriptions."""

    __slots__ = ("ws", "transport", "write_limit", "outbox", "wakeup", "books", "trades",
                 "tickers", "candles", "last_push", "overflowed", "closing", "writer",
                 "bucket", "sent")

    def __init__(self, ws: ServerConnection, outbox: Outbox, write_limit: int,
                 now: float, bucket: TokenBucket) -> None:
        self.ws = ws
        self.bucket = bucket
        """The connection's request rate limit."""
        self.transport = ws.transport
        self.write_limit = write_limit
        self.outbox = outbox
        self.wakeup = asyncio.Event()
        self.books: dict[str, int] = {}
        """symbol -> depth of its book subscription (one depth per symbol)."""
        self.trades: set[str] = set()
        self.tickers: set[str] = set()
        self.candles: dict[str, set[str]] = {}
        """symbol -> the intervals of its candles subscriptions."""
        self.last_push = now
        self.overflowed = False
        self.closing = False
        self.writer: asyncio.Task[None] | None = None
        self.sent = 0
        """Websocket messages written to this connection (the metrics' count)."""

    def _write_now(self, frame: bytes) -> bool:
        """Write a framed message if nothing is queued and the buffer has room. O(1)."""
        if (not self.outbox and self.ws.protocol.state is State.OPEN
                and self.transport.get_write_buffer_size() < self.write_limit):
            self.transport.write(frame)
            self.sent += 1
            return True
        return False

    def push(self, payload: bytes, frame: bytes, now: float) -> bool:
        """Send or queue a push; False on overflow (then ignored until it is handled)."""
        if self.overflowed or self.closing:
            return True
        self.last_push = now
        if self._write_now(frame):
            return True
        if not self.outbox.push(payload):
            self.overflowed = True
            return False
        self.wakeup.set()
        return True

    def push_many(self, items: list[tuple[bytes, bytes]], now: float) -> bool:
        """Several pushes ``(payload, frame)`` in order, written with one syscall if possible."""
        if self.overflowed or self.closing:
            return True
        if self._write_now(b"".join([frame for _, frame in items])):
            self.sent += len(items) - 1  # _write_now counted one
            self.last_push = now
            return True
        return all(self.push(payload, frame, now) for payload, frame in items)

    def reply(self, payload: bytes) -> bool:
        """Send or queue a reply; False when the outbox is full (the peer does not read)."""
        if self.closing or self._write_now(text_frame(payload)):
            return True
        if not self.outbox.reply(payload):
            return False
        self.wakeup.set()
        return True

    def symbols(self) -> set[str]:
        return set(self.books) | self.trades | self.tickers | set(self.candles)


class _MarketSubs:
    """Who is subscribed to what in one market."""

    __slots__ = ("books", "trades", "tickers", "candles")

    def __init__(self) -> None:
        self.books: dict[int, set[Connection]] = {d: set() for d in DEPTHS}
        self.trades: set[Connection] = set()
        self.tickers: set[Connection] = set()
        self.candles: dict[str, set[Connection]] = {}
        """interval -> its subscribers; only intervals that have some (publish skips the
        rest without looking)."""

    def add_candles(self, interval: str, c: Connection) -> None:
        self.candles.setdefault(interval, set()).add(c)

    def discard_candles(self, interval: str, c: Connection) -> None:
        conns = self.candles.get(interval)
        if conns is not None:
            conns.discard(c)
            if not conns:
                del self.candles[interval]


class FeedServer:
    """Websocket listener and fan-out hub for a set of :class:`MarketFeed`.

    ``await start(host, port)`` binds (port 0 picks a free one, see
    :attr:`port`); the stream readers call :meth:`publish` after each batch;
    ``await close()`` stops listening and drops every connection.
    """

    def __init__(self, markets: Iterable[Market], feeds: dict[str, MarketFeed], *,
                 queue_limit: int = DEFAULT_LIMIT,
                 resync_window_s: float = DEFAULT_RESYNC_WINDOW_S,
                 write_limit: int = WRITE_LIMIT,
                 slow_close_timeout_s: float = SLOW_CLOSE_TIMEOUT_S,
                 sndbuf: int | None = SNDBUF,
                 request_rate: float = REQUEST_RATE,
                 request_burst: int = REQUEST_BURST) -> None:
        self.markets = tuple(markets)
        self.feeds = feeds
        self.symbols = frozenset(feeds)
        self.queue_limit = queue_limit
        self.resync_window_s = resync_window_s
        self.write_limit = write_limit
        self.slow_close_timeout_s = slow_close_timeout_s
        self.sndbuf = sndbuf
        TokenBucket(request_rate, request_burst, 0.0)  # check the limits now, not per connection
        self.request_rate = request_rate
        self.request_burst = request_burst
        self.internal_errors = 0
        """Frames answered INTERNAL (an unexpected exception, logged)."""
        self.subs = {symbol: _MarketSubs() for symbol in feeds}
        self.connections: set[Connection] = set()
        self.slow_closes = 0
        self.resyncs = 0
        self.request_counts: dict[tuple[str, str], int] = {}
        """(method, ``ok`` or error code) -> requests answered; counted only when
        :attr:`count_requests` (metrics enabled)."""
        self.count_requests = False
        self.sent_closed = 0
        """Messages written to connections since closed."""
        self.registry: CollectorRegistry | None = None
        """Metrics served on the websocket port (None: none); set before :meth:`start`."""
        self.health: Health | None = None
        """``/healthz`` and ``/readyz`` on the websocket port (None: not served)."""
        self._markets_result = {"markets": [m.to_wire() for m in self.markets]}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        process_request: Hook = self._process_request
        if self.health is not None:
            process_request = ops_hook(self.registry, self.health, self._process_request)
        self._server = await serve(
            self._handle, host, port,
            process_request=process_request,
            max_size=MAX_FRAME,
            write_limit=self.write_limit,
            compression=None,
        )
        self._heartbeat = asyncio.create_task(self._heartbeats())

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        sockets = list(self._server.sockets)
        port: int = sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _process_request(self, connection: ServerConnection, request: Request
                         ) -> Response | None:
        """Plain HTTP GETs on the same port get the web page; handshakes pass (None)."""
        return http_static.process_request(connection, request)

    def messages_sent(self) -> int:
        """Websocket messages written so far. O(connections)."""
        return self.sent_closed + sum(c.sent for c in self.connections)

    def _count(self, method: str, code: str) -> None:
        key = (method, code)
        self.request_counts[key] = self.request_counts.get(key, 0) + 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- fan-out --------------------------------------------------------------

    def publish(self, feed: MarketFeed, batch: Batch) -> None:
        """Send a batch's messages to every subscriber of its streams. Never waits.

        Cost: per changed stream one encode and one framing, then per
        subscriber one transport write (all its messages of the batch in one)
        or outbox appends.
        """
        subs = self.subs[feed.symbol]
        streams: list[tuple[set[Connection], bytes, bytes]] = []
        for depth, conns in subs.books.items():
            if conns:
                _add_stream(streams, conns, batch.book(depth))
        if subs.trades:
            _add_stream(streams, subs.trades, batch.trades())
        if subs.tickers:
            _add_stream(streams, subs.tickers, batch.ticker())
        if subs.candles:
            for interval, conns in subs.candles.items():
                _add_stream(streams, conns, batch.candles(interval))
        if not streams:
            return
        now = self._now()
        overflowed: list[Connection] = []
        if len(streams) == 1:
            conns, payload, frame = streams[0]
            for c in conns:
                if not c.push(payload, frame, now):
                    overflowed.append(c)
        else:
            per_conn: dict[Connection, list[tuple[bytes, bytes]]] = {}
            for conns, payload, frame in streams:
                for c in conns:
                    items = per_conn.get(c)
                    if items is None:
                        per_conn[c] = [(payload, frame)]
                    else:
                        items.append((payload, frame))
            for c, items in per_conn.items():
                ok = (c.push(items[0][0], items[0][1], now) if len(items) == 1
                      else c.push_many(items, now))
                if not ok:
                    overflowed.append(c)
        for c in overflowed:
            self._on_overflow(c, now)

    def _on_overflow(self, c: Connection, now: float) -> None:
        """A full outbox: resync the connection with fresh snapshots, or close it."""
        c.overflowed = False
        if c.closing:
            return
        if c.outbox.on_overflow(now, bool(c.trades)) is Overflow.CLOSE:
            self._close_slow(c)
            return
        self.resyncs += 1
        log.info("slow consumer %s: queue full, resync with fresh snapshots",
                 c.ws.remote_address)
        c.outbox.drop_pushes()
        for symbol, depth in c.books.items():
            _push_one(c, self.feeds[symbol].book_snapshot(depth), now)
        for symbol in c.tickers:
            _push_one(c, self.feeds[symbol].ticker_message("snapshot"), now)
        for symbol, intervals in c.candles.items():
            for interval in sorted(intervals):
                _push_one(c, self.feeds[symbol].candles_snapshot(interval), now)
        if c.overflowed:  # replies alone fill the queue: the peer does not read at all
            self._close_slow(c)

    def _close_slow(self, c: Connection) -> None:
        self.slow_closes += 1
        log.info("slow consumer %s: closing (1008)", c.ws.remote_address)
        self._forget(c)
        c.outbox.clear()
        self._spawn(self._close_connection(c, 1008, "slow consumer"))

    async def _close_connection(self, c: Connection, code: int, reason: str) -> None:
        if c.writer is not None:
            c.writer.cancel()
        try:
            async with asyncio.timeout(self.slow_close_timeout_s):
                await c.ws.close(code, reason)
        except TimeoutError:
            c.ws.transport.abort()

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # -- connections ------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if self.sndbuf is not None:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        now = self._now()
        c = Connection(ws, Outbox(self.queue_limit, self.resync_window_s), self.write_limit,
                       now, TokenBucket(self.request_rate, self.request_burst, now))
        self.connections.add(c)
        c.writer = asyncio.create_task(self._write(c))
        try:
            async for frame in ws:
                self._on_frame(c, frame)
                if c.closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            if not c.closing:
                self._forget(c)
                c.writer.cancel()
            self.connections.discard(c)
            self.sent_closed += c.sent
            c.sent = 0
        if c.closing:
            # Keep the handler (and so the connection) alive until the close is done.
            await ws.wait_closed()

    async def _write(self, c: Connection) -> None:
        """Drain ``c``'s outbox into its socket; only this task ever waits on the socket."""
        ws, outbox, wakeup = c.ws, c.outbox, c.wakeup
        sent = 0
        try:
            while True:
                frame = outbox.pop()
                if frame is None:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                await ws.send(frame, text=True)
                c.sent += 1
                sent += 1
                if sent % WRITER_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let other connections and the readers run
        except ConnectionClosed:
            pass

    def _forget(self, c: Connection) -> None:
        """Remove every subscription of ``c`` and stop queuing to it."""
        c.closing = True
        for symbol, depth in c.books.items():
            self.subs[symbol].books[depth].discard(c)
        for symbol in c.trades:
            self.subs[symbol].trades.discard(c)
        for symbol in c.tickers:
            self.subs[symbol].tickers.discard(c)
        for symbol, intervals in c.candles.items():
            for interval in intervals:
                self.subs[symbol].discard_candles(interval, c)
        c.books.clear()
        c.trades.clear()
        c.tickers.clear()
        c.candles.clear()

    # -- requests -------------------------------------------------------------

    def _on_frame(self, c: Connection, frame: str | bytes) -> None:
        """Answer one frame: exactly one reply; nothing escapes (it would close with 1011).

        A refusal (``StreamexError``) is its error reply; any other exception
        is logged once, with its traceback, and answered ``INTERNAL``.
        """
        try:
            self._answer(c, frame)
        except Exception:  # never leak internals to the peer, never drop the connection
            self.internal_errors += 1
            if self.count_requests:
                self._count(UNKNOWN_METHOD, errors.INTERNAL)
            request_id = _request_id_of(frame)
            log.exception("request %r failed", request_id)
            try:
                self._reply(c, error_frame(request_id, errors.INTERNAL, "internal error"))
            except Exception as exc:  # the reply path itself failed (traceback logged above)
                log.warning("cannot answer request %r: %r", request_id, exc)

    def _answer(self, c: Connection, frame: str | bytes) -> None:
        """Rate limit, parse and dispatch one frame; a refusal becomes its error reply."""
        now = self._now()
        if not c.bucket.take(now):
            self._reply(c, error_frame_of(rate_limited(c.bucket, now, "connection"),
                                          _request_id_of(frame)))
            if self.count_requests:
                self._count(UNKNOWN_METHOD, errors.RATE_LIMITED)
            return
        request_id: int | str | None = None
        method = UNKNOWN_METHOD
        try:
            req = parse_request(frame, self.symbols)
            request_id = req.id
            method = req.method
            self._dispatch(c, req)
            if self.count_requests:
                self._count(method, OK)
        except StreamexError as exc:  # a RequestError echoes its own id
            self._reply(c, error_frame_of(exc, request_id))
            if self.count_requests:
                self._count(method if req_ok(method) else _method_of(frame), exc.code)

    def _reply(self, c: Connection, payload: bytes) -> None:
        if not c.reply(payload):
            self._close_slow(c)

    def _dispatch(self, c: Connection, req: MdRequest) -> None:
        method = req.method
        if method == "ping":
            self._reply(c, result_frame(req.id, {"pong": now_ms()}))
        elif method == "markets":
            self._reply(c, result_frame(req.id, self._markets_result))
        else:
            assert req.params is not None
            if method == "subscribe":
                self._subscribe(c, req.id, req.params)
            else:
                self._unsubscribe(c, req.id, req.params)

    def _subscribe(self, c: Connection, rid: int | str | None, p: SubscriptionParams) -> None:
        symbol = p.symbol
        subs = self.subs[symbol]
        feed = self.feeds[symbol]
        self._reply(c, result_frame(rid, {"subscribed": p.to_wire()}))
        if c.closing:  # the reply overflowed a peer that does not read
            return
        now = self._now()
        if p.channel == "book":
            assert p.depth is not None
            old = c.books.get(symbol)
            if old is not None:
                subs.books[old].discard(c)
            c.books[symbol] = p.depth
            subs.books[p.depth].add(c)
            ok = _push_one(c, feed.book_snapshot(p.depth), now)
        elif p.channel == "trades":
            c.trades.add(symbol)
            subs.trades.add(c)
            ok = _push_one(c, feed.trades_snapshot(), now)
        elif p.channel == "candles":
            assert p.interval is not None
            c.candles.setdefault(symbol, set()).add(p.interval)
            subs.add_candles(p.interval, c)
            ok = _push_one(c, feed.candles_snapshot(p.interval), now)
        else:
            c.tickers.add(symbol)
            subs.tickers.add(c)
            ok = _push_one(c, feed.ticker_message("snapshot"), now)
        if not ok:
            self._on_overflow(c, now)

    def _unsubscribe(self, c: Connection, rid: int | str | None, p: SubscriptionParams) -> None:
        symbol = p.symbol
        subs = self.subs[symbol]
        if p.channel == "book":
            depth = c.books.get(symbol)
            if depth is not None and (p.depth is None or p.depth == depth):
                del c.books[symbol]
                subs.books[depth].discard(c)
        elif p.channel == "trades":
            c.trades.discard(symbol)
            subs.trades.discard(c)
        elif p.channel == "candles":
            intervals = c.candles.get(symbol, set())
            gone = set(intervals) if p.interval is None else intervals & {p.interval}
            for interval in gone:
                intervals.discard(interval)
                subs.discard_candles(interval, c)
            if not intervals:
                c.candles.pop(symbol, None)
        else:
            c.tickers.discard(symbol)
            subs.tickers.discard(c)
        self._reply(c, result_frame(rid, {"unsubscribed": p.to_wire()}))

    # -- heartbeats -------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Every tick, push a heartbeat to each connection idle for :data:`HEARTBEAT_S`."""
        while True:
            await asyncio.sleep(HEARTBEAT_TICK_S)
            now = self._now()
            ts: int | None = None
            for c in self.connections:
                if c.closing or now - c.last_push < HEARTBEAT_S or len(c.outbox):
                    continue
                if ts is None:
                    ts = now_ms()
                seqs = {s: self.feeds[s].seq for s in sorted(c.symbols())}
                if not _push_one(c, heartbeat(ts, seqs), now):
                    self._on_overflow(c, now)


def _request_id_of(frame: str | bytes) -> int | str | None:
    """The id to echo on a reply not made from a decoded request (rate limit, INTERNAL)."""
    try:
        return decode_envelope(frame, require_id=False).id
    except RequestError as exc:
        return exc.request_id
    except Exception:  # pragma: no cover - decode_envelope raises only RequestError
        return None


def req_ok(method: str) -> bool:
    return method != UNKNOWN_METHOD


def _method_of(frame: str | bytes) -> str:
    """The method a refused frame names if it is one served, else ``unknown`` (bounded)."""
    try:
        method = decode_envelope(frame, require_id=False).method
    except Exception:
        return UNKNOWN_METHOD
    return method if method in MD_METHODS else UNKNOWN_METHOD


def _push_one(c: Connection, payload: bytes, now: float) -> bool:
    return c.push(payload, text_frame(payload), now)


def _add_stream(streams: list[tuple[set[Connection], bytes, bytes]], conns: set[Connection],
                payload: bytes | None) -> None:
    if payload is not None:
        streams.append((conns, payload, text_frame(payload)))
