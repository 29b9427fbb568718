"""Places this process sent through the risk stage whose outcome the view has not seen yet.

Without the risk stage an order id is the market's input entry id, so "the
engine has applied this place" is a comparison with the market's last applied
input id (``OpenOrdersView.applied``). Under the risk stage an order id is the
risk shard's input entry id (``contract.ids.stage_order_id``), unrelated to
the market's, and an order the risk stage refused never reaches the market.
So the gateway tracks its own places instead: a place is *pending* from its
XADD's reply until the view applies the first report naming its order id (a
market's ``new``, ``rejected``, ``trade`` or ``expired``, or the risk stage's
``MarketAnswer``). Until then it may be open (cancel on disconnect includes
it) and its client order id is in use.

The router may read an order's first report before the XADD's reply is
processed. :meth:`StagedPlaces.resolve` therefore also remembers the order
ids it sees while places are in flight (XADD sent, reply not processed), and
:meth:`StagedPlaces.added` checks them; they are forgotten once every place
that was in flight when they were seen has its reply.

Memory: pending places are bounded by ``max_pending`` (the oldest are
dropped beyond it: their outcome is then left to the view and the engine),
the remembered ids by the reports read during the longest XADD round trip.
Costs: O(1) per report and per place (amortized). No I/O.
"""

from __future__ import annotations

import logging
from collections import deque

log = logging.getLogger(__name__)

MAX_PENDING = 200_000
"""Most pending places kept; beyond it the oldest are dropped (logged once)."""

_Key = tuple[str, str, str]
"""``(symbol, account, client_order_id)``."""


class StagedPlaces:
    """Pending places by order id, their client order ids, and the ids seen during XADDs."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._max_pending = max_pending
        # order id -> (symbol, account, client_order_id or None), oldest first.
        self._pending: dict[str, tuple[str, str, str | None]] = {}
        # (symbol, account, client_order_id) -> how many places in flight or pending use it.
        self._coids: dict[_Key, int] = {}
        # Order ids resolved while places were in flight: id -> mark when seen.
        self._seen: dict[str, int] = {}
        self._seen_log: deque[tuple[int, str]] = deque()
        self._mark = 0
        """Counts the ids remembered in ``_seen`` (a logical clock)."""
        # Marks of the places in flight, in submission order, and how many per mark.
        self._flight_marks: deque[int] = deque()
        self._flight_count: dict[int, int] = {}
        self._full_logged = False

    # -- the places ---------------------------------------------------------------

    def submitting(self, symbol: str, account: str, client_order_id: str | None) -> int:
        """A place is being XADDed: returns its token (pass it to :meth:`added`/:meth:`failed`)."""
        mark = self._mark
        if self._flight_count.get(mark, 0) == 0:
            self._flight_marks.append(mark)
            self._flight_count[mark] = 0
        self._flight_count[mark] += 1
        if client_order_id is not None:
            key = (symbol, account, client_order_id)
            self._coids[key] = self._coids.get(key, 0) + 1
        return mark

    def added(self, token: int, symbol: str, account: str, client_order_id: str | None,
              order_id: str) -> None:
        """The place's XADD returned ``order_id``: pending until its first report."""
        self._landed(token)
        if order_id in self._seen:  # its first report was read before this reply
            self._unuse(symbol, account, client_order_id)
        else:
            self._pending[order_id] = (symbol, account, client_order_id)
            if len(self._pending) > self._max_pending:
                self._drop_oldest()
        self._forget()

    def failed(self, token: int, symbol: str, account: str, client_order_id: str | None
               ) -> None:
        """The place's XADD failed: nothing is pending (the client checks orders.open)."""
        self._landed(token)
        self._unuse(symbol, account, client_order_id)
        self._forget()

    def resolve(self, order_id: str) -> None:
        """The view applied a report naming ``order_id`` (called for every report). O(1)."""
        place = self._pending.pop(order_id, None)
        if place is not None:
            self._unuse(*place)
        elif self._flight_marks:
            self._mark += 1
            self._seen[order_id] = self._mark
            self._seen_log.append((self._mark, order_id))

    # -- queries ------------------------------------------------------------------

    def is_pending(self, order_id: str) -> bool:
        """True while ``order_id``'s place has no report in the view yet. O(1)."""
        return order_id in self._pending

    def in_use(self, symbol: str, account: str, client_order_id: str) -> bool:
        """True while a place with that client order id is in flight or pending. O(1)."""
        return (symbol, account, client_order_id) in self._coids

    def __len__(self) -> int:
        """How many places are pending."""
        return len(self._pending)

    @property
    def remembered(self) -> int:
        """How many resolved ids are kept for places in flight (for tests)."""
        return len(self._seen)

    # -- internals ----------------------------------------------------------------

    def _landed(self, token: int) -> None:
        left = self._flight_count.get(token, 0) - 1
        if left > 0:
            self._flight_count[token] = left
        else:
            self._flight_count.pop(token, None)
        marks = self._flight_marks
        while marks and marks[0] not in self._flight_count:
            marks.popleft()

    def _forget(self) -> None:
        """Forget the ids seen before every place still in flight was submitted."""
        # A place submitted at mark m needs the ids remembered after it (marks > m).
        limit = self._flight_marks[0] if self._flight_marks else self._mark
        log_, seen = self._seen_log, self._seen
        while log_ and log_[0][0] <= limit:
            mark, order_id = log_.popleft()
            if seen.get(order_id) == mark:
                del seen[order_id]

    def _unuse(self, symbol: str, account: str, client_order_id: str | None) -> None:
        if client_order_id is None:
            return
        key = (symbol, account, client_order_id)
        left = self._coids.get(key, 0) - 1
        if left > 0:
            self._coids[key] = left
        else:
            self._coids.pop(key, None)

    def _drop_oldest(self) -> None:
        order_id = next(iter(self._pending))
        self._unuse(*self._pending.pop(order_id))
        if not self._full_logged:
            self._full_logged = True
            log.warning("more than %d places pending; the oldest are left to the engine",
                        self._max_pending)
