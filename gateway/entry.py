"""Order entry without a transport: the checks and the submission every front end shares.

The websocket session (``gateway.session``) and the REST service (``api``)
hand each order-entry request to the process's :class:`OrderEntry`, which,
in this order: takes a token of the account's rate limit (``RATE_LIMITED``),
turns the params into checked engine commands (``gateway.validation``),
refuses a place whose client order id the account has open or in flight in
that market (``DUPLICATE_CLIENT_ORDER_ID``, ``gateway.client_ids``), refuses
places and amends while the market's backlog is at ``limits.max_backlog``
(``OVERLOADED``; cancels always go through), tracks a place until its outcome
is known (under the risk stage ``gateway.staged``, else the held client order
id), and submits the commands to the XADD batcher (``host.submit``).

Every refusal is a ``StreamexError`` raised before anything reaches Redis;
otherwise the caller gets the future of the XADD: the entry id, which is a
place's order id (a cancel's or amend's request id). What the caller does
with it (a websocket reply in request order, or an HTTP answer after the
engine's reports) is the caller's. Sans-I/O apart from the submission; cost
per request: one decode-free validation, O(1) bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from contract.commands import OrderCommand
from contract.errors import DUPLICATE_CLIENT_ORDER_ID, OVERLOADED, StreamexError
from contract.market import Market
from contract.order_entry import AmendParams, CancelParams, PlaceParams, SymbolParams
from contract.ratelimit import TokenBucket, rate_limited
from contract.settings import LimitsConfig
from contract.wire import quote
from gateway.client_ids import InFlightClientIds
from gateway.staged import StagedPlaces
from gateway.validation import commands_for


class EntryHost(Protocol):
    """What order entry needs from its process (``gateway.server.Gateway`` provides it)."""

    limits: LimitsConfig
    markets: Mapping[str, Market]
    client_ids: InFlightClientIds
    """Client order ids of places in flight from this process (duplicate refusal)."""
    risk_shards: int
    """Risk shards the orders go through; 0 without the risk stage."""
    staged: StagedPlaces | None
    """Under the risk stage: this process's places not yet reported (else None)."""

    def now_ms(self) -> int:
        """The gateway's clock (ms since the epoch): a ``GTD`` order must expire after it."""
        ...

    def backlog_of(self, symbol: str) -> int:
        """Commands waiting unapplied in the market (estimate, no I/O)."""
        ...

    def submit(self, symbol: str, cmd: OrderCommand) -> asyncio.Future[str]:
        """XADD ``cmd`` to the market's input stream; the future gets its entry id."""
        ...

    def account_bucket(self, account: str) -> TokenBucket: ...


class OrderEntry:
    """Rate limit, validation, duplicate refusal, admission and submission of one process."""

    def __init__(self, host: EntryHost) -> None:
        self.host = host

    def place(self, account: str, params: PlaceParams) -> tuple[str, asyncio.Future[str]]:
        """Check and submit an ``order.place``: ``(symbol, future of the order id)``.

        Raises StreamexError (RATE_LIMITED, UNKNOWN_SYMBOL, BAD_REQUEST,
        INVALID_*, DUPLICATE_CLIENT_ORDER_ID, OVERLOADED) with nothing sent; a ``GTD``
        order's ``expire_time`` is checked against ``host.now_ms()``.
        The future fails (or is cancelled) when Redis did not confirm the XADD:
        the order may or may not have been received.
        """
        host = self.host
        self._take(account)
        symbol, cmd = commands_for(params, host.markets, account,
                                   risk=host.risk_shards > 0, now_ms=host.now_ms())[0]
        coid = params.client_order_id
        if coid is not None and host.client_ids.in_use(symbol, account, coid):
            raise StreamexError(
                DUPLICATE_CLIENT_ORDER_ID,
                f"params.client_order_id: {quote(coid)} is in use by an open or "
                f"in-flight order of this account in {symbol}")
        self.admit(symbol)
        return symbol, self._submit_place(account, symbol, cmd, coid)

    def request(self, account: str, params: CancelParams | AmendParams | SymbolParams
                ) -> asyncio.Future[Any]:
        """Check and submit an ``order.cancel``, ``order.amend`` or ``order.cancel_all``.

        The future gets the request's entry id (a list of them for a
        ``cancel_all`` of every market). Raises StreamexError (RATE_LIMITED,
        UNKNOWN_SYMBOL, BAD_REQUEST, INVALID_*, UNKNOWN_ORDER; OVERLOADED for an
        amend) with nothing sent.
        """
        host = self.host
        self._take(account)
        commands = commands_for(params, host.markets, account, risk=host.risk_shards > 0)
        if isinstance(params, AmendParams):
            self.admit(commands[0][0])
        futures = [host.submit(symbol, cmd) for symbol, cmd in commands]
        return futures[0] if len(futures) == 1 else asyncio.gather(*futures)

    def admit(self, symbol: str) -> None:
        """Raise StreamexError OVERLOADED while the market's backlog is at the limit. O(shards)."""
        backlog = self.host.backlog_of(symbol)
        if backlog >= self.host.limits.max_backlog:
            raise StreamexError(OVERLOADED,
                                f"{symbol}: the engine is behind ({backlog} commands queued); "
                                "retry later")

    def _take(self, account: str) -> None:
        bucket = self.host.account_bucket(account)
        now = time.monotonic()
        if not bucket.take(now):
            raise rate_limited(bucket, now, "account")

    def _submit_place(self, account: str, symbol: str, cmd: OrderCommand, coid: str | None
                      ) -> asyncio.Future[str]:
        """Submit a checked place, tracking it until its outcome is known."""
        host = self.host
        staged = host.staged
        if staged is not None:
            token = staged.submitting(symbol, account, coid)

            def settle_staged(done: asyncio.Future[str]) -> None:
                if done.cancelled() or done.exception() is not None:
                    staged.failed(token, symbol, account, coid)
                else:
                    staged.added(token, symbol, account, coid, done.result())

            try:
                future = host.submit(symbol, cmd)
            except BaseException:
                staged.failed(token, symbol, account, coid)
                raise
            future.add_done_callback(settle_staged)
            return future
        client_ids = host.client_ids
        if coid is None or not client_ids.hold(symbol, account, coid):
            return host.submit(symbol, cmd)

        def settle(done: asyncio.Future[str]) -> None:
            if done.cancelled() or done.exception() is not None:
                client_ids.release(symbol, account, coid)
            else:
                client_ids.added(symbol, account, coid, done.result())

        try:
            future = host.submit(symbol, cmd)
        except BaseException:
            client_ids.release(symbol, account, coid)
            raise
        future.add_done_callback(settle)
        return future
