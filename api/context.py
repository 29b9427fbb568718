"""What every REST handler reads: the process's parts, gathered once (no I/O of its own).

:class:`ApiContext` holds the order-entry host (a ``gateway.server.Gateway``
run without its websocket listener: batcher, router, open-orders and balances
views, and :attr:`~gateway.server.Gateway.entry`, the order entry the
websocket sessions use too), the live books, the waiters for the engine's
answers, the history database (None when the service runs without one) and
the clock. :class:`ApiRequest` is one decoded request: its parameters and,
for a signed endpoint, the account it proved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from api.books import LiveBooks
from api.errors import UNKNOWN, BinanceError
from api.history import History
from api.outcomes import Outcomes
from api.params import Params
from api.shapes import Symbols
from contract.settings import Account, Config
from gateway.server import Gateway


@dataclass(slots=True)
class ApiRequest:
    """One request: its parameters (read them, then ``params.finish()``) and the account
    of a signed request (None on a public endpoint)."""

    params: Params
    account: Account | None

    @property
    def signer(self) -> Account:
        """The signed request's account (only called on signed endpoints)."""
        assert self.account is not None
        return self.account


@dataclass(slots=True)
class ApiContext:
    """The parts of one REST process; built by ``api.service.ApiService``."""

    config: Config
    symbols: Symbols
    gateway: Gateway
    books: LiveBooks
    outcomes: Outcomes
    history: History | None
    now_ms: Callable[[], int]
    answer_timeout_s: float = 10.0
    """How long a request waits for the engine's answer before -1007 (Binance: 10 s)."""

    @property
    def risk(self) -> bool:
        return self.gateway.risk_shards > 0

    def require_history(self) -> History:
        """The history database, or -1000 (HTTP 503) when the service runs without one."""
        if self.history is None:
            raise BinanceError(UNKNOWN, "An unknown error occurred while processing the "
                               "request. (no history database: start streamex api with --db)",
                               status=503)
        return self.history


Handler = Callable[[ApiContext, ApiRequest], Awaitable[Any]]
"""An endpoint: returns what to encode as its JSON body, or raises BinanceError."""
