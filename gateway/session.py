"""One order-entry websocket connection: requests in, replies and execution reports out.

The receive loop handles each frame synchronously (:meth:`Session.handle`):
the connection's rate limit and decoding (``gateway.validation``), then either
an immediate reply or, for the order-entry methods, the process's
:class:`~gateway.entry.OrderEntry` (account rate limit, validation, duplicate
refusal, admission, XADD to the batcher: the same code the REST service
uses). Everything the
connection sends goes through one FIFO *outbox* of slots written by one writer
task: a reply that waits for its XADD holds a slot that its future fills, and
a push is appended behind every slot already there. So replies keep request
order, and the reply to a request always precedes any push it caused (the
push can only arrive after the request's slot was queued), even when the event
reader sees the engine's report before the XADD reply is processed.

Errors become ``{"id", "error"}`` replies here and only here; an unexpected
exception is logged and answered ``INTERNAL`` with a generic message.

Behaviour a client relies on:

- ``orders.open`` answers from the process's open-orders view, i.e. what the
  engine has applied as far as this gateway has read; an order that was just
  "received" appears once the engine applied it (its ``new`` report follows).
- Rate limits: a token bucket per connection (every frame, a failed logon
  included) and one per account and process (order-entry methods), both
  answered ``RATE_LIMITED`` with the limit, the scope and ``retry_after_ms``.
- ``order.place`` with a ``client_order_id`` that the account has open in
  the market (in the view), or that this process is still placing (XADDed,
  not yet applied as far as it has read: ``gateway.client_ids``), is answered
  ``DUPLICATE_CLIENT_ORDER_ID`` and nothing is sent to Redis.
- ``OVERLOADED`` refuses ``order.place`` and ``order.amend`` while the
  market's backlog is at ``limits.max_backlog``; cancels always go through.
- An XADD that Redis did not confirm is answered ``INTERNAL`` ("may not have
  been received"): the client checks ``orders.open`` before retrying.
- Backpressure: while more than ``OUTBOX_HIGH`` frames wait to be sent to a
  connection, its requests are not read (resuming at ``OUTBOX_LOW``), so a
  client that sends faster than it reads is slowed down and loses no reply.
  Only a peer that takes nothing for ``STALL_S`` while frames wait, or lets
  ``MAX_OUTBOX`` frames pile up, is closed (1008 "slow consumer").
- ``cancel_on_disconnect`` acts when the connection closes or the gateway
  stops; a gateway that crashes (SIGKILL) cannot send the cancels. It cancels
  every order placed on the connection that may still be open, untriggered
  stops and take-profits included (they are open orders in the view).
- Under the risk stage, ``account.balances`` answers from the process's
  balances view (what the risk engines committed as far as it has read), and
  a place is pending from its XADD's reply until its first report
  (``gateway.staged``): its client order id stays in use and cancel on
  disconnect includes it until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from contract.commands import CancelAll, OrderCommand
from contract.errors import (
    BAD_REQUEST,
    CANCEL_ON_DISCONNECT,
    INTERNAL,
    UNAUTHENTICATED,
    UNKNOWN_METHOD,
    StreamexError,
)
from contract.market import Market, format_units
from contract.order_entry import (
    AmendParams,
    AssetBalance,
    BalancesParams,
    BalancesResult,
    CancelParams,
    LogonParams,
    PlaceParams,
    SymbolParams,
)
from contract.ratelimit import RateLimited, TokenBucket, rate_limited
from contract.settings import Account, LimitsConfig
from contract.wire import (
    RequestError,
    decode_envelope,
    error_frame,
    error_frame_of,
    quote,
    result_frame,
)
from gateway.auth import verify_logon
from gateway.balances_view import BalancesView
from gateway.entry import OrderEntry
from gateway.metrics import OK, GatewayStats
from gateway.metrics import UNKNOWN_METHOD as UNKNOWN_LABEL
from gateway.orders_view import OpenOrdersView
from gateway.reports import status_of
from gateway.validation import (
    ORDER_METHODS,
    MethodSpec,
    Request,
    decode_method,
    market_of,
)
from gateway.ws_send import send_texts

log = logging.getLogger(__name__)

OUTBOX_HIGH = 1_000
"""Frames waiting for a connection at which its requests stop being read (backpressure)."""
OUTBOX_LOW = 250
"""Frames waiting at which reading its requests resumes."""
MAX_OUTBOX = 200_000
"""Frames waiting (execution reports keep coming) at which the connection is closed (1008)."""
STALL_S = 30.0
"""A peer that takes none of the frames waiting for it this long is closed (1008)."""
_DISCONNECT_WAIT_S = 5.0

_RECEIVED = {"status": "received"}
_UNCONFIRMED = ("order entry is unavailable: the request may not have been received; "
                "check orders.open before retrying")


class SessionHost(Protocol):
    """What a session needs from its process (``gateway.server.Gateway`` provides it)."""

    limits: LimitsConfig
    markets: Mapping[str, Market]
    markets_result: dict[str, Any]
    """The ``markets`` reply, built once."""
    accounts_by_api_key: Mapping[str, Account]
    view: OpenOrdersView
    entry: OrderEntry
    """The process's order entry (``gateway.entry``): checks and submits order commands."""
    methods: Mapping[str, MethodSpec]
    """The methods served (``gateway.validation.METHODS``, or ``RISK_METHODS``)."""
    balances: BalancesView | None
    """Under the risk stage: every account's committed balances (else None)."""
    asset_units: Mapping[str, int]
    """Decimals of every asset the markets trade."""

    def now_ms(self) -> int: ...

    def submit(self, symbol: str, cmd: OrderCommand) -> asyncio.Future[str]:
        """XADD ``cmd`` to the market's input stream; the future gets its entry id."""
        ...

    def register(self, session: Session) -> None: ...

    def unregister(self, session: Session) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class _Slot:
    """A place in the outbox; ``frame`` is None until the reply is known."""

    __slots__ = ("frame",)

    def __init__(self, frame: bytes | None) -> None:
        self.frame = frame


class Session:
    """State of one connection: its account, limits, outbox and the orders it placed."""

    outbox_high = OUTBOX_HIGH
    outbox_low = OUTBOX_LOW
    stall_s = STALL_S

    def __init__(self, host: SessionHost, ws: ServerConnection) -> None:
        self.host = host
        self.ws = ws
        self.account: str | None = None
        self.cancel_on_disconnect = False
        limits = host.limits
        self._bucket = TokenBucket(limits.connection_rate, limits.connection_burst,
                                   time.monotonic())
        self._outbox: deque[_Slot] = deque()
        self._wake = asyncio.Event()
        self._resume = asyncio.Event()
        self._paused = False
        self._send_started: float | None = None
        self._in_flight: set[asyncio.Future[str]] = set()
        # symbol -> ids of orders placed here that may still be open (cancel_on_disconnect).
        self._placed: dict[str, set[str]] = {}
        self._prune_at = 1024
        self._closed = False
        self._stats: GatewayStats | None = getattr(host, "stats", None)
        self._received_at = 0.0
        """When the frame being handled was received (monotonic): the latency's start."""

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes, then cancel its orders if asked to."""
        writer = asyncio.create_task(self._write())
        try:
            async for frame in self.ws:
                if self._closed:
                    continue  # closing: keep reading only to complete the close handshake
                self.handle(frame)
                if len(self._outbox) >= self.outbox_high:
                    await self._backpressure()
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            self.host.unregister(self)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._cancel_placed_orders()

    async def _backpressure(self) -> None:
        """Stop reading requests until the outbox is down to ``outbox_low``.

        Unread frames then wait in websockets' queue and the kernel's buffers,
        so a client that sends faster than it reads is slowed down, and loses
        no reply. A peer that took nothing for ``stall_s`` is closed (1008).
        """
        self._paused = True
        try:
            while len(self._outbox) > self.outbox_low and not self._closed:
                # Cleared on every turn: pushes may refill the outbox after the writer
                # signalled, and a set event would make this loop spin.
                self._resume.clear()
                try:
                    async with asyncio.timeout(self.stall_s):
                        await self._resume.wait()
                except TimeoutError:
                    if self._stalled():
                        self._slow_consumer()
        finally:
            self._paused = False

    def _stalled(self) -> bool:
        """True when a write has been waiting for the peer to read for ``stall_s``."""
        since = self._send_started
        return since is not None and time.monotonic() - since >= self.stall_s

    async def _write(self) -> None:
        """The one writer: sends every ready frame at the head of the outbox in one write."""
        outbox, ws, wake = self._outbox, self.ws, self._wake
        batch: list[bytes] = []
        try:
            while True:
                while outbox and (frame := outbox[0].frame) is not None:
                    outbox.popleft()
                    batch.append(frame)
                if not batch:
                    wake.clear()
                    await wake.wait()
                    continue
                self._send_started = time.monotonic()
                await send_texts(ws, batch)
                self._send_started = None
                if self._stats is not None:
                    self._stats.messages_sent += len(batch)
                batch.clear()
                if self._paused and len(outbox) <= self.outbox_low:
                    self._resume.set()
        except ConnectionClosed:
            self._closed = True  # nothing more can be sent: stop reading requests too
        finally:
            self._resume.set()

    def push(self, frame: bytes) -> None:
        """Queue an execution report; closes a peer that stopped reading (1008)."""
        if self._closed:
            return
        outbox = self._outbox
        if len(outbox) >= self.outbox_high and (len(outbox) >= MAX_OUTBOX or self._stalled()):
            self._slow_consumer()
            return
        outbox.append(_Slot(frame))
        self._wake.set()

    def _slow_consumer(self) -> None:
        """Close a connection that does not read what it is sent; it resyncs on reconnect."""
        if not self._closed:
            self._closed = True
            self._resume.set()
            if self._stats is not None:
                self._stats.slow_closes += 1
            log.warning("closing connection of %s: slow consumer (%d frames waiting)",
                        self.account, len(self._outbox))
            self.host.spawn(self.ws.close(1008, "slow consumer"))

    # -- replies --------------------------------------------------------------------

    def _reply(self, frame: bytes) -> None:
        self._outbox.append(_Slot(frame))
        self._wake.set()

    def _reply_when(self, request_id: int | str, future: asyncio.Future[Any],
                    result: Callable[[Any], object], method: str) -> None:
        """Reply ``result(future's value)`` once ``future`` is done, in request order."""
        slot = _Slot(None)
        self._outbox.append(slot)
        stats = self._stats

        def fill(done: asyncio.Future[Any]) -> None:
            code = INTERNAL
            try:
                if done.cancelled():
                    slot.frame = error_frame(request_id, INTERNAL, _UNCONFIRMED)
                elif (exc := done.exception()) is not None:
                    log.error("request %r not confirmed by Redis: %r", request_id, exc)
                    slot.frame = error_frame(request_id, INTERNAL, _UNCONFIRMED)
                else:
                    slot.frame = result_frame(request_id, result(done.result()))
                    code = OK
            except Exception:  # never leave the slot empty: it would block the outbox
                log.exception("reply to request %r failed", request_id)
                slot.frame = error_frame(request_id, INTERNAL, "internal error")
            if stats is not None:
                stats.request(method, code)
            self._wake.set()

        future.add_done_callback(fill)

    # -- requests -------------------------------------------------------------------

    def handle(self, frame: str | bytes) -> None:
        """Answer one frame (synchronously; a reply that needs Redis is filled in later)."""
        now = self._received_at = time.monotonic()
        stats = self._stats
        if not self._bucket.take(now):
            limited = rate_limited(self._bucket, now, "connection")
            limited_id, limited_method = _request_id_of(frame)
            self._reply(error_frame_of(limited, limited_id))
            if stats is not None:
                stats.request(self._method_label(limited_method), limited.code, limited.scope)
            return
        request_id: int | str | None = None
        method: str | None = None
        try:
            envelope = decode_envelope(frame)
            request_id = envelope.id
            method = envelope.method
            request = decode_method(envelope, self.host.methods)
            self._dispatch(request)
            if stats is not None and request.method not in ORDER_METHODS:
                stats.request(request.method, OK)  # order methods count with their reply
        except StreamexError as exc:  # a RequestError echoes its own id
            self._reply(error_frame_of(exc, request_id))
            if stats is not None:
                stats.request(self._method_label(method), exc.code,
                              exc.scope if isinstance(exc, RateLimited) else None)
        except Exception:
            log.exception("request %r failed", request_id)
            self._reply(error_frame(request_id, INTERNAL, "internal error"))
            if stats is not None:
                stats.request(self._method_label(method), INTERNAL)

    def _method_label(self, method: str | None) -> str:
        """``method`` if it is one the gateway serves, else ``unknown`` (bounded labels)."""
        return method if method is not None and method in self.host.methods else UNKNOWN_LABEL

    def _dispatch(self, request: Request) -> None:
        method, params, rid = request.method, request.params, request.id
        host = self.host
        if request.needs_logon and self.account is None:
            raise StreamexError(UNAUTHENTICATED, f"{method}: log on first")
        if method in ORDER_METHODS:
            if method == "order.place":
                assert isinstance(params, PlaceParams)
                symbol, future = host.entry.place(self._account(), params)
                self._placed_reply(rid, symbol, params.client_order_id, future)
                return
            assert isinstance(params, CancelParams | AmendParams | SymbolParams)
            self._reply_when(rid, host.entry.request(self._account(), params), _received,
                             method)
        elif method == "orders.open":
            assert isinstance(params, SymbolParams)
            self._open_orders(rid, params)
        elif method == "account.balances":
            assert isinstance(params, BalancesParams)
            self._balances(rid, params)
        elif method == "ping":
            self._reply(result_frame(rid, {"pong": host.now_ms()}))
        elif method == "markets":
            self._reply(result_frame(rid, host.markets_result))
        elif method == "logon":
            assert isinstance(params, LogonParams)
            self._logon(rid, params)
        else:  # pragma: no cover - decode_method only accepts the methods above
            raise StreamexError(INTERNAL, "internal error")

    def _account(self) -> str:
        assert self.account is not None
        return self.account

    def _submit(self, symbol: str, cmd: OrderCommand) -> asyncio.Future[str]:
        return self.host.submit(symbol, cmd)

    def _logon(self, rid: int | str, params: LogonParams) -> None:
        host = self.host
        if self.account is not None:
            raise StreamexError(BAD_REQUEST, f"logon: already logged on as {self.account}")
        account = verify_logon(host.accounts_by_api_key, params.api_key, params.timestamp,
                               params.signature, host.now_ms())
        self.account = account.id
        self.cancel_on_disconnect = params.cancel_on_disconnect
        # Registered before the reply is queued: every later push follows the reply.
        host.register(self)
        self._reply(result_frame(rid, {"account": account.id, "server_time": host.now_ms()}))

    def _placed_reply(self, rid: int | str, symbol: str, coid: str | None,
                      future: asyncio.Future[str]) -> None:
        """Reply ``received`` once the place's XADD returned; track it for cancel on disconnect."""
        self._reply_when(rid, future, lambda order_id: {
            "order_id": order_id, "client_order_id": coid, "symbol": symbol,
            "status": "received"}, "order.place")
        stats = self._stats
        if stats is not None:
            received_at = self._received_at

            def placed(done: asyncio.Future[str]) -> None:
                if not done.cancelled() and done.exception() is None:
                    stats.placed(done.result(), received_at)

            future.add_done_callback(placed)
        if self.cancel_on_disconnect:
            self._in_flight.add(future)
            future.add_done_callback(lambda done: self._placed_done(symbol, done))

    def _placed_done(self, symbol: str, done: asyncio.Future[str]) -> None:
        self._in_flight.discard(done)
        if done.cancelled() or done.exception() is not None:
            return
        ids = self._placed.setdefault(symbol, set())
        ids.add(done.result())
        if len(ids) >= self._prune_at:
            view = self.host.view
            live = {i for i in ids if view.may_be_open(symbol, i)}
            self._placed[symbol] = live
            self._prune_at = max(1024, 2 * len(live))

    def _open_orders(self, rid: int | str, params: SymbolParams) -> None:
        host = self.host
        if params.symbol is not None:
            market_of(host.markets, params.symbol)
        orders = host.view.open_orders(self._account(), params.symbol)
        self._reply(result_frame(rid, {
            "orders": [status_of(host.markets[s], r) for s, r in orders]}))

    def _balances(self, rid: int | str, params: BalancesParams) -> None:
        host = self.host
        view = host.balances
        if view is None:  # pragma: no cover - only RISK_METHODS has account.balances
            raise StreamexError(UNKNOWN_METHOD, "method: 'account.balances' needs the risk stage")
        units = host.asset_units
        account = self._account()
        if params.asset is not None:
            decimals = units.get(params.asset)
            if decimals is None:
                raise StreamexError(BAD_REQUEST, f"params.asset: {quote(params.asset)} is not "
                                                 "an asset of a listed market")
            available, held = view.get(account, params.asset)
            rows = [(params.asset, available, held)]
        else:
            rows = [row for row in view.of(account) if row[0] in units]
        self._reply(result_frame(rid, BalancesResult([
            AssetBalance(asset, format_units(available, units[asset]),
                         format_units(held, units[asset]))
            for asset, available, held in rows])))

    # -- disconnect -----------------------------------------------------------------

    async def _cancel_placed_orders(self) -> None:
        """With cancel_on_disconnect: one CancelAll of this connection's live orders per market."""
        if self.account is None or not self.cancel_on_disconnect:
            return
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=_DISCONNECT_WAIT_S)
        view = self.host.view
        futures = []
        for symbol, ids in self._placed.items():
            live = sorted(i for i in ids if view.may_be_open(symbol, i))
            if live:
                cmd = CancelAll(self.account, live, CANCEL_ON_DISCONNECT)
                futures.append(self._submit(symbol, cmd))
        self._placed.clear()
        if not futures:
            return
        done, _ = await asyncio.wait(futures, timeout=_DISCONNECT_WAIT_S)
        for future in futures:
            if future not in done or future.cancelled() or future.exception() is not None:
                log.error("cancel_on_disconnect for %s not confirmed", self.account)


def _received(_: object) -> dict[str, str]:
    return _RECEIVED


def _request_id_of(frame: str | bytes) -> tuple[int | str | None, str | None]:
    """The id to echo on a refusal that happens before decoding (rate limit), and the
    method named (None when the frame does not decode)."""
    try:
        envelope = decode_envelope(frame)
    except RequestError as exc:
        return exc.request_id, None
    return envelope.id, envelope.method
