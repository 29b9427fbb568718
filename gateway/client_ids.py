"""Which client order ids an account may not place again right now, as this process sees it.

PROTOCOL.md: a ``client_order_id`` is unique among the account's open orders
in a market. The engine decides (a duplicate gets a ``rejected`` report), but
the gateway refuses at once, with an error reply and nothing sent to Redis,
what it can see itself:

- an order with that id open in the open-orders view (``gateway.orders_view``,
  as far as this process has read the events), and
- an order with that id that this process has XADDed (or is XADDing) whose
  place the engine has not applied as far as the view has read: its ``new``
  or ``rejected`` report is still to come.

A place is *held* from its submission until the view has applied past its
input entry id (then the view knows whether it is open), or until its XADD
fails. Only a duplicate placed through another gateway process in that
window is left to the engine's asynchronous rejection.

Under the risk stage an order id says nothing about the market's applied input
id; places are then tracked by order id until their first report
(``gateway.staged``), and :meth:`InFlightClientIds.in_use` asks that.

Memory is bounded: a held place is one not yet applied by the engine, so
there are at most about ``limits.max_backlog`` per market (admission refuses
more, ``OVERLOADED``) plus the XADDs in flight, and never more than
:data:`MAX_HELD` per market (beyond it, places are not held and the engine's
rejection remains). Costs: O(log n) per place, pruning amortized O(log n).
No I/O.
"""

from __future__ import annotations

import heapq
import logging

from contract.ids import parse_id
from gateway.orders_view import OpenOrdersView
from gateway.staged import StagedPlaces

log = logging.getLogger(__name__)

MAX_HELD = 200_000
"""Most places held per market; beyond it the engine's asynchronous rejection is the check."""

_Key = tuple[str, str]
"""``(account, client_order_id)``."""
_EntryKey = tuple[int, int]


class InFlightClientIds:
    """Client order ids of this process's places whose outcome the view has not applied."""

    def __init__(self, view: OpenOrdersView, max_held: int = MAX_HELD,
                 staged: StagedPlaces | None = None) -> None:
        self._view = view
        self._staged = staged
        self._max_held = max_held
        # symbol -> (account, client_order_id) -> input entry id (None: XADD not returned yet).
        self._held: dict[str, dict[_Key, _EntryKey | None]] = {}
        # symbol -> heap of (entry id, account, client_order_id) of held places with an id.
        self._heap: dict[str, list[tuple[_EntryKey, str, str]]] = {}
        self._full_logged = False

    def in_use(self, symbol: str, account: str, client_order_id: str) -> bool:
        """True when the account has an open order with that id, or a place of it in flight."""
        if self._staged is not None:
            return (self._staged.in_use(symbol, account, client_order_id)
                    or self._view.by_client_id(symbol, account, client_order_id) is not None)
        self._prune(symbol)
        held = self._held.get(symbol)
        if held is not None and (account, client_order_id) in held:
            return True
        return self._view.by_client_id(symbol, account, client_order_id) is not None

    def hold(self, symbol: str, account: str, client_order_id: str) -> bool:
        """Hold the id of a place being submitted; False (not held) when the market is full."""
        held = self._held.setdefault(symbol, {})
        if len(held) >= self._max_held:
            self._prune(symbol)
            if len(held) >= self._max_held:
                if not self._full_logged:
                    self._full_logged = True
                    log.warning("%s: %d places in flight; duplicate client order ids are "
                                "left to the engine", symbol, len(held))
                return False
        held[(account, client_order_id)] = None
        return True

    def added(self, symbol: str, account: str, client_order_id: str, entry_id: str) -> None:
        """The place's XADD returned ``entry_id``: held until the view has applied past it."""
        held = self._held.get(symbol)
        key = (account, client_order_id)
        if held is None or key not in held:
            return
        entry = parse_id(entry_id)
        held[key] = entry
        heapq.heappush(self._heap.setdefault(symbol, []), (entry, account, client_order_id))
        self._prune(symbol)

    def release(self, symbol: str, account: str, client_order_id: str) -> None:
        """The place's XADD failed: the id is not held any more (the engine still checks)."""
        held = self._held.get(symbol)
        if held is not None and held.get((account, client_order_id), ()) is None:
            del held[(account, client_order_id)]

    def held(self, symbol: str) -> int:
        """How many places of the market are held (pruned first)."""
        self._prune(symbol)
        return len(self._held.get(symbol, ()))

    def _prune(self, symbol: str) -> None:
        """Stop holding every place the view has applied (its outcome is in the view)."""
        heap = self._heap.get(symbol)
        if not heap:
            return
        applied = self._view.applied(symbol)
        held = self._held[symbol]
        while heap and heap[0][0] <= applied:
            entry, account, client_order_id = heapq.heappop(heap)
            key = (account, client_order_id)
            if held.get(key) == entry:
                del held[key]
        if len(held) < self._max_held // 2:
            self._full_logged = False
