"""The order book and price-time-priority matching: sans-I/O, deterministic.

Feed one command with :meth:`OrderBook.apply` and get back the events it
caused (execution reports, trades, one book update). Nothing here reads a
clock or a random source: time is the input entry id's milliseconds, order ids
are input entry ids, and ``seq``/``trade_id`` are counters kept in the state,
so the same commands always give byte-identical events. Save and restore the
whole state with ``matching.snapshot``.

Fees: every trade report carries ``fee``, what the fill costs that order in
quote units (``Market.fee``: per order, cumulative, rounded up; the order
keeps ``fee_num``), at the maker or taker rate by its liquidity. A market buy
by budget (``Place.quote_qty``, ``qty`` 0) takes, at each price, the largest
number of lots whose notional plus taker fee fits in what is left of its
budget (one integer division, see :meth:`OrderBook._execute_budget`).

Commands the risk stage forwarded (``matching.apply``) carry their own order
id: :meth:`OrderBook.apply_into` then takes the time apart from the id, and
``risk_seqs`` (risk shard -> highest ``risk_seq`` applied) is kept here so
that it travels in the snapshot.

Order types of PROTOCOL.md section B. Stops and take-profits rest off-book,
untriggered, in two ``SortedList`` s keyed by stop price (those that trigger on
a print at or above it, and at or below); after a command, the trades it
printed are examined in print order and every stop a print meets is
triggered, in placement priority, breadth first through cascades
(:meth:`OrderBook._run_stops`). ``GTD`` orders are indexed by expire time:
before a command, what its time has reached expires (one comparison per
command when nothing is due). An iceberg shows ``visible`` (at most its
``display``) in its level's total; a maker that used up its slice is refilled
and goes to the back of the level. Orders without these features pay one
truthiness test per fill and a few per place.

Layout: each side is a ``SortedList`` of prices plus a dict price -> Level;
a Level keeps its orders in an ``OrderedDict`` (FIFO with O(1) removal from
anywhere). Costs: resting an order O(log L) for a new level else O(1); a
cancel O(1) (O(log L) when it empties a level); each fill O(1) amortized; a
stop or GTD order O(log n) more to index.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final

from msgspec import Struct
from msgspec import structs as _structs
from sortedcontainers import SortedList

from contract import commands as _commands
from contract import errors
from contract import events as _events
from contract.commands import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    OrderType,
    Place,
    Side,
    StpMode,
    Tif,
    report_tif,
    triggers_above,
)
from contract.events import Event
from contract.ids import ts_of
from contract.market import Market
from contract.snapshot import RestingOrder

# The compiled core reads a module-level ``Final`` name from a C static; any other
# global (an imported class or constant) is a dict lookup at every use. So the
# classes and constants the hot paths use are bound here once.
Report: Final = _events.Report
Trade: Final = _events.Trade
BookUpdate: Final = _events.BookUpdate
CancelRejected: Final = _events.CancelRejected
InputRejected: Final = _events.InputRejected
_PLACE: Final = Place
_CANCEL: Final = Cancel
_AMEND: Final = Amend
_CANCEL_ALL: Final = CancelAll
_CLOCK: Final = _commands.Clock
SIDES: Final = _commands.SIDES
TIFS: Final = _commands.TIFS
STP_MODES: Final = _commands.STP_MODES
ORDER_TYPES: Final = _commands.ORDER_TYPES
LIMIT_TYPES: Final = _commands.LIMIT_TYPES
MARKET_TYPES: Final = _commands.MARKET_TYPES
astuple: Final = _structs.astuple
_ORDERED_DICT: Final = OrderedDict
_RESTING: Final = RestingOrder


class Order:
    """A resting (or matching) order. ``leaves == qty - cum_qty`` always.

    A plain slotted class, so that the compiled core (``setup.py``) makes it a
    native one: a C struct whose fields the book reads and writes directly.
    Every order is built with all its fields given, in this order.
    """

    __slots__ = ("order_id", "account", "client_order_id", "side", "type", "tif", "price",
                 "qty", "cum_qty", "leaves", "cum_notional", "post_only", "stp", "prio",
                 "fee_num", "stop_price", "expire_time", "display", "visible", "untriggered",
                 "quote_qty", "at_market", "above", "extra")

    def __init__(self, order_id: str, account: str, client_order_id: str | None, side: str,
                 type: str, tif: str, price: int, qty: int, cum_qty: int, leaves: int,
                 cum_notional: int, post_only: bool, stp: str, prio: int, fee_num: int,
                 stop_price: int, expire_time: int, display: int, visible: int,
                 untriggered: bool, quote_qty: int, at_market: bool, above: bool,
                 extra: bool) -> None:
        self.order_id = order_id
        self.account = account
        self.client_order_id = client_order_id
        self.side = side
        self.type = type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.cum_qty = cum_qty
        self.leaves = leaves
        self.cum_notional = cum_notional
        self.post_only = post_only
        self.stp = stp
        self.prio = prio
        self.fee_num = fee_num
        """Exact fees charged so far times ``market.fee_den`` (``Market.fee``)."""
        self.stop_price = stop_price
        self.expire_time = expire_time
        """A ``GTD`` order's end (ms); 0 for every other order."""
        self.display = display
        """An iceberg's slice (``display_qty``); 0: the whole order shows."""
        self.visible = visible
        """The part of an iceberg its level's total counts (0 < visible <= display)."""
        self.untriggered = untriggered
        """A stop or take-profit waiting off-book for its trigger."""
        self.quote_qty = quote_qty
        """The budget of a (stop) market buy by quote; 0 otherwise."""
        self.at_market = at_market
        """Matches as a market order (``market``, ``stop_market``, ``take_profit_market``)."""
        self.above = above
        """An untriggered stop that triggers on a print at or above ``stop_price``."""
        self.extra = extra
        """Uses a field of section B (stop, GTD, iceberg): plain orders skip their handling."""

    @property
    def status(self) -> str:
        if self.untriggered:
            return "untriggered"
        return "partially_filled" if self.cum_qty else "new"

    @property
    def shown(self) -> int:
        """What its level's total counts: the visible slice of an iceberg, else leaves."""
        return self.visible if self.display else self.leaves


class Level:
    """All orders resting at one price, in time priority; ``total`` = sum of leaves."""

    __slots__ = ("price", "total", "orders")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.orders: OrderedDict[str, Order] = _ORDERED_DICT()


_OPEN: Final = frozenset({"new", "partially_filled", "untriggered"})

_NEVER: Final = 1 << 63
"""No ``GTD`` order: later than any clock."""

_PlaceFields = tuple[str, Side, OrderType, int, int, Tif, bool, str | None, StpMode, int, int, int,
                     int]
"""A ``Place``'s fields in their wire order (``msgspec.structs.astuple``): see ``_place``."""
_RestingFields = tuple[str, str, str | None, str, int, int, int, int, bool, str, int, int, str,
                       str, int, int, int, int, bool, int]
"""A ``RestingOrder``'s fields in their wire order: see ``OrderBook.load_orders``."""


def _require_fields(cls: type[Struct], names: str) -> None:
    """Refuse to import if ``cls``'s fields are not ``names`` in that order: the unpacking
    of its ``astuple`` (typed by the alias above) would take one field for another."""
    if cls.__struct_fields__ != tuple(names.split()):
        raise ImportError(f"matching.book: {cls.__name__}'s fields changed; update its "
                          "fields alias and where it is unpacked")


_require_fields(Place, "account side type qty price tif post_only client_order_id stp quote_qty "
                       "stop_price expire_time display_qty")
_require_fields(RestingOrder, "order_id account client_order_id side price qty cum_qty "
                              "cum_notional post_only stp prio fee_num type tif stop_price "
                              "expire_time display_qty visible untriggered quote_qty")


class OrderBook:
    """One market's book and matching state.

    ``apply(input_id, command)`` is the only mutator the pipeline uses; the
    caller publishes the returned events in order. ``_check()`` asserts every
    invariant (use it in tests, it is O(n)).
    """

    def __init__(self, market: Market) -> None:
        self.market = market
        self.symbol = market.symbol
        self.bid_prices: SortedList = SortedList()  # ascending; best bid is [-1]
        self.ask_prices: SortedList = SortedList()  # ascending; best ask is [0]
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.orders: dict[str, Order] = {}
        self.by_account: dict[str, dict[str, Order]] = {}
        self.client_ids: dict[tuple[str, str], Order] = {}
        self.seq = 0
        self.trade_id = 0
        self.prio = 0
        # taker_num >= maker_num: no taker rate, no fees at all (the default markets).
        self._fee = market.fee if market.taker_num else None
        self._per_tick_lot = market.quote_per_tick_lot
        # The market's bounds as the book's own fields (a Market attribute is a dict lookup).
        self._min_lots = market.min_lots
        self._max_lots = market.max_lots
        self._min_ticks = market.min_ticks
        self._max_ticks = market.max_ticks
        # Risk shard -> the highest risk_seq applied from it (matching.apply).
        self.risk_seqs: dict[int, int] = {}
        # Best prices cached (None = side empty): read on every command.
        self.best_bid_price: int | None = None
        self.best_ask_price: int | None = None
        # The last input id's milliseconds, parsed once per distinct value, and the id's
        # text up to its "-" ("-" before the first: no id starts with it).
        self._ts_prefix = "-"
        self._ts = 0
        # Per-command scratch: prices of levels touched, for the book update.
        self._touched_bids: dict[int, None] = {}
        self._touched_asks: dict[int, None] = {}
        # Untriggered stops: (stop_price, order id), for prints at/above and at/below.
        self.stops_above: SortedList = SortedList()
        self.stops_below: SortedList = SortedList()
        self._armed = 0  # untriggered stops in the two lists
        # Stops to trigger in this command before its prints are examined (already met).
        self._pending: list[Order] = []
        # Open GTD orders: (expire_time, order id); the earliest, or _NEVER.
        self.expiries: SortedList = SortedList()
        self._next_expiry = _NEVER
        self.last_price = 0
        """The price of the market's last trade; 0 before the first."""
        self.clock = 0
        """The time (ms) of the last command applied."""

    # -- queries --------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.best_bid_price

    def best_ask(self) -> int | None:
        return self.best_ask_price

    def depth(self, side: str, n: int | None = None) -> list[tuple[int, int]]:
        """Top ``n`` levels of a side as ``(price, total)``, best first. O(n)."""
        if side == "buy":
            prices = list(reversed(self.bid_prices)) if n is None else [
                self.bid_prices[-1 - i] for i in range(min(n, len(self.bid_prices)))
            ]
            return [(p, self.bids[p].total) for p in prices]
        prices = list(self.ask_prices) if n is None else list(self.ask_prices.islice(0, n))
        return [(p, self.asks[p].total) for p in prices]

    @property
    def next_expiry(self) -> int | None:
        """When the next ``GTD`` order expires (ms), None if there is none: a command (or
        a ``Clock`` entry) at that time or later expires it. O(1)."""
        return None if self._next_expiry == _NEVER else self._next_expiry

    def resting_orders(self) -> list[RestingOrder]:
        """Every open order as a snapshot's ``RestingOrder``: bids best first, then asks
        best first, each level in time priority, then the untriggered stops by priority.
        O(n); here rather than in ``matching.snapshot`` because compiled, an order's
        fields are read from its struct (interpreted code pays a descriptor call each)."""
        out: list[RestingOrder] = []
        for prices, levels in ((list(reversed(self.bid_prices)), self.bids),
                               (list(self.ask_prices), self.asks)):
            for price in prices:
                for o in levels[price].orders.values():
                    out.append(_resting(o))
        orders = self.orders
        stops = [orders[oid] for _, oid in self.stops_above]
        stops += [orders[oid] for _, oid in self.stops_below]
        stops.sort(key=_prio)
        for o in stops:
            out.append(_resting(o))
        return out

    def load_orders(self, orders: list[RestingOrder]) -> None:
        """Put a snapshot's open orders back into this empty book
        (``matching.snapshot.restore_book``), in their snapshot order, which is their
        priority; then the best prices. O(n log L); compiled for the reason
        :meth:`resting_orders` is, and a record's fields come in one ``astuple``."""
        for r in orders:
            fields: _RestingFields = astuple(r)
            (order_id, account, client_order_id, side, price, qty, cum_qty, cum_notional,
             post_only, stp, prio, fee_num, kind, tif, stop_price, expire_time, display,
             visible, untriggered, quote_qty) = fields
            o = Order(order_id, account, client_order_id, side, kind, tif, price, qty,
                      cum_qty, qty - cum_qty, cum_notional, post_only, stp, prio, fee_num,
                      stop_price, expire_time, display, visible, untriggered, quote_qty,
                      kind in MARKET_TYPES, False,
                      bool(stop_price or expire_time or display or tif == "GTD"))
            if untriggered:
                o.above = triggers_above(kind, side)
                self._index(o)
                self._arm(o)
                continue
            if side == "buy":
                levels, prices = self.bids, self.bid_prices
            else:
                levels, prices = self.asks, self.ask_prices
            level = levels.get(price)
            if level is None:
                level = levels[price] = Level(price)
                prices.add(price)
            level.orders[order_id] = o
            level.total += o.shown
            self._index(o)
        self.best_bid_price = self.bid_prices[-1] if self.bid_prices else None
        self.best_ask_price = self.ask_prices[0] if self.ask_prices else None

    def open_orders(self, account: str) -> list[Order]:
        """The account's open orders (resting and untriggered), oldest priority first.
        O(k log k)."""
        orders = self.by_account.get(account)
        return sorted(orders.values(), key=_prio) if orders else []

    # -- the one mutator ------------------------------------------------------

    def apply(self, input_id: str, cmd: Command) -> list[Event]:
        """Apply one command; return its events (each with the next ``seq``)."""
        events: list[Event] = []
        self.apply_into(input_id, cmd, events)
        return events

    def apply_into(self, input_id: str, cmd: Command, events: list[Event],
                   ts: int | None = None) -> None:
        """Apply one command, appending its events to ``events`` (the batch's list).

        Same as :meth:`apply` without a list per command: the runner's hot path.
        ``ts`` (ms) stamps the events; None: the milliseconds of ``input_id``. A
        command the risk stage forwarded passes its own id (the order id of a
        place, the request id of a cancel or amend) and the market entry's time.
        """
        # GTD expiry runs when the clock moves: within one millisecond nothing new falls due
        # (a place whose expire_time is not after the clock is rejected, never rests).
        if ts is None:
            if input_id.startswith(self._ts_prefix):
                ts = self._ts
            else:
                ms = input_id.partition("-")[0]
                ts = self._ts = self.clock = int(ms)
                self._ts_prefix = ms + "-"
                if ts >= self._next_expiry:
                    self._expire_due(ts, events)
        else:
            self.clock = ts
            if ts >= self._next_expiry:
                self._expire_due(ts, events)
        armed = self._armed
        if armed:
            mark = len(events)
            printed = self.trade_id
        t = type(cmd)
        if t is _PLACE:
            self._place(input_id, ts, cmd, events)  # type: ignore[arg-type]
        elif t is _CANCEL:
            self._cancel(input_id, ts, cmd, events)  # type: ignore[arg-type]
        elif t is _AMEND:
            self._amend(input_id, ts, cmd, events)  # type: ignore[arg-type]
        elif t is _CANCEL_ALL:
            self._cancel_all(ts, cmd, events)  # type: ignore[arg-type]
        elif t is not _CLOCK:  # pragma: no cover - the decoder only produces these commands
            raise TypeError(f"not a command: {cmd!r}")
        # Stops look at the command's prints only when some waited and it printed (trade ids
        # count prints); a stop it placed already met is pending whatever happened.
        if self._pending:
            self._run_stops(ts, mark if armed else len(events), events)
        elif armed and self.trade_id != printed:
            self._run_stops(ts, mark, events)
        # One BookUpdate with the touched levels' totals (inlined: runs for most commands).
        tb = self._touched_bids
        ta = self._touched_asks
        if tb or ta:
            # Tuples: an event kept alive leaves the cycle collector nothing to walk.
            bid_changes = _changes(self.bids, tb, True) if tb else ()
            ask_changes = _changes(self.asks, ta, False) if ta else ()
            self.seq += 1
            events.append(BookUpdate(self.seq, ts, bid_changes, ask_changes))

    def reject_input(self, input_id: str, reason: str = errors.BAD_REQUEST,
                     ts: int | None = None) -> list[Event]:
        """Answer an undecodable input entry with one ``InputRejected`` event.

        ``ts`` defaults to the milliseconds of ``input_id``.
        """
        self.seq += 1
        return [InputRejected(self.seq, ts_of(input_id) if ts is None else ts, input_id,
                              reason)]

    def reject_command(self, order_id: str, cmd: Command, reason: str,
                       ts: int | None = None) -> list[Event]:
        """Answer a decoded command that could not be applied (``INTERNAL``: a bug) to its
        account, leaving the book as it is: a ``rejected`` report for a place, a
        ``cancel_rejected`` for a cancel or an amend, an ``InputRejected`` for a cancel-all.

        So the account learns the outcome and the risk stage releases the hold it took
        (it settles reports, not anonymous input rejections). O(1); ``ts`` defaults to
        the milliseconds of ``order_id``.
        """
        ts = ts_of(order_id) if ts is None else ts
        self.seq += 1
        t = type(cmd)
        if t is Place:
            p: Place = cmd  # type: ignore[assignment]
            limit = p.type in LIMIT_TYPES
            return [Report(self.seq, ts, p.account, order_id, p.client_order_id, p.side,
                           p.type, report_tif(p.type, p.tif),  # type: ignore[arg-type]
                           p.price if limit else 0, p.qty, "rejected", "rejected", 0, 0, 0,
                           0, 0, None, None, reason, 0, p.stop_price, p.expire_time,
                           p.display_qty)]
        if t is Cancel or t is Amend:
            c: Cancel | Amend = cmd  # type: ignore[assignment]
            return [CancelRejected(self.seq, ts, c.account, c.order_id, c.client_order_id,
                                   order_id, reason)]
        return [InputRejected(self.seq, ts, order_id, reason)]

    # -- reports --------------------------------------------------------------

    def _report(self, ts: int, o: Order, exec_type: str, status: str, events: list[Event],
                reason: str | None = None) -> None:
        self.seq += 1
        events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type,  # type: ignore[arg-type]
            o.tif, o.price, o.qty, exec_type, status, 0, 0, o.cum_qty,  # type: ignore[arg-type]
            o.leaves if status in _OPEN else 0,
            o.cum_notional, None, None, reason, 0, o.stop_price, o.expire_time, o.display,
        ))

    def _reject_cancel(self, ts: int, request_id: str, account: str, order_id: str | None,
                       client_order_id: str | None, reason: str, events: list[Event]) -> None:
        self.seq += 1
        events.append(CancelRejected(self.seq, ts, account, order_id, client_order_id,
                                     request_id, reason))

    # -- place ----------------------------------------------------------------

    def _place(self, input_id: str, ts: int, cmd: Place, events: list[Event]) -> None:
        # Every field in one C call: compiled, each attribute read is a generic lookup.
        fields: _PlaceFields = astuple(cmd)
        (account, side, kind, qty, price, tif, post_only, client_order_id, stp, quote_qty,
         stop_price, expire_time, display_qty) = fields
        if side not in SIDES or tif not in TIFS or stp not in STP_MODES:
            self._reject_invalid(input_id, ts, events)
            return
        if (kind != "limit" and kind != "market") or tif == "GTD" or stop_price \
                or expire_time or display_qty:
            if kind not in ORDER_TYPES:
                self._reject_invalid(input_id, ts, events)
            else:
                self._place_extra(input_id, ts, cmd, events)
            return
        # A plain limit or market order: the common case, which pays nothing for section B.
        is_limit = kind == "limit"
        asked_tif = tif
        if not is_limit:
            price = 0
            tif = "FOK" if tif == "FOK" else "IOC"
        o = Order(input_id, account, client_order_id, side, kind, tif, price, qty, 0, qty, 0,
                  post_only, stp, 0, 0, 0, 0, 0, 0, False, quote_qty, not is_limit, False,
                  False)
        reason = None
        if quote_qty:
            # A budget: only a market-type buy, with qty 0, not FOK (it could never be "all").
            if quote_qty < 0 or is_limit or side != "buy" or qty or asked_tif == "FOK":
                reason = errors.BAD_REQUEST
        elif not self._min_lots <= qty <= self._max_lots:
            reason = errors.INVALID_QTY
        elif is_limit and not self._min_ticks <= price <= self._max_ticks:
            reason = errors.INVALID_PRICE
        if reason is not None:
            pass
        elif input_id in self.orders:
            reason = errors.BAD_REQUEST  # an input entry can only be one order
        elif client_order_id is not None and (account, client_order_id) in self.client_ids:
            reason = errors.DUPLICATE_CLIENT_ORDER_ID
        elif post_only and (not is_limit or self._crosses(o)):
            reason = errors.POST_ONLY_WOULD_TAKE
        if reason is not None:
            o.leaves = 0
            self._report(ts, o, "rejected", "rejected", events, reason)
            return
        self.seq += 1
        events.append(Report(
            self.seq, ts, account, input_id, client_order_id, side,
            kind, tif, price, qty, "new", "new", 0, 0, 0, qty, 0,
            None, None, None, 0, 0, 0, 0))
        if is_limit and tif == "GTC":
            # _crosses(o), inlined: a passive order rests at once (the common case).
            if side == "buy":
                best = self.best_ask_price
                if best is None or best > price:
                    self._rest(o)
                    return
            else:
                best = self.best_bid_price
                if best is None or best < price:
                    self._rest(o)
                    return
            self._execute(ts, o, events)
        elif quote_qty:
            self._execute_budget(ts, o, quote_qty, events)
        else:
            self._execute(ts, o, events)

    def _reject_invalid(self, input_id: str, ts: int, events: list[Event]) -> None:
        """A Place built in Python with a value the decoder refuses (a side, type, time in
        force or STP mode it does not know): answered like the same command arriving
        undecodable through the stream."""
        self.seq += 1
        events.append(InputRejected(self.seq, ts, input_id, errors.BAD_REQUEST))

    def _place_extra(self, input_id: str, ts: int, cmd: Place, events: list[Event]) -> None:
        """A place using a field of section B: a stop or take-profit, GTD, an iceberg (or a
        plain type carrying one of their fields, refused). Rests, waits untriggered or
        matches like :meth:`_place`'s plain orders."""
        market = self.market
        kind = cmd.type
        tif: str
        if kind == "limit":
            is_limit = True
            stop = False
            tif = cmd.tif
        elif kind == "market":
            is_limit = stop = False
            tif = "FOK" if cmd.tif == "FOK" else "IOC"
        else:
            stop = True
            is_limit = kind in LIMIT_TYPES
            tif = report_tif(kind, cmd.tif)
        o = Order(input_id, cmd.account, cmd.client_order_id, cmd.side, kind, tif,
                  cmd.price if is_limit else 0, cmd.qty, 0, cmd.qty, 0, cmd.post_only,
                  cmd.stp, 0, 0, cmd.stop_price, cmd.expire_time, cmd.display_qty, 0, False,
                  cmd.quote_qty, not is_limit, False, True)
        if cmd.quote_qty:
            # A budget: only a market-type buy, with qty 0, not FOK (it could never be "all").
            reason = (errors.BAD_REQUEST if cmd.quote_qty < 0 or is_limit or cmd.side != "buy"
                      or cmd.qty or cmd.tif == "FOK" else None)
        elif not market.min_lots <= cmd.qty <= market.max_lots:
            reason = errors.INVALID_QTY
        else:
            reason = None
        if reason is not None:
            pass
        elif is_limit and not market.min_ticks <= cmd.price <= market.max_ticks:
            reason = errors.INVALID_PRICE
        elif (reason := _order_type_reason(market, cmd, stop, is_limit)) is not None:
            pass
        elif input_id in self.orders:
            reason = errors.BAD_REQUEST  # an input entry can only be one order
        elif cmd.client_order_id is not None and (cmd.account, cmd.client_order_id) in \
                self.client_ids:
            reason = errors.DUPLICATE_CLIENT_ORDER_ID
        elif cmd.post_only and (not is_limit or self._crosses(o)):
            reason = errors.POST_ONLY_WOULD_TAKE
        elif cmd.expire_time and cmd.expire_time <= ts:
            reason = errors.EXPIRED
        if reason is not None:
            o.leaves = 0
            self._report(ts, o, "rejected", "rejected", events, reason)
            return
        if stop:
            self.prio += 1
            o.prio = self.prio
            o.untriggered = True
            o.above = triggers_above(kind, cmd.side)
            self._report(ts, o, "new", "untriggered", events)
            self._index(o)
            if self._met(o):
                self._pending.append(o)
            else:
                self._arm(o)
            return
        self._report(ts, o, "new", "new", events)
        if is_limit and tif == "GTC" and not self._crosses(o):
            self._rest(o)
        elif cmd.quote_qty:
            self._execute_budget(ts, o, cmd.quote_qty, events)
        else:
            self._execute(ts, o, events)

    # -- stops ----------------------------------------------------------------

    def _met(self, o: Order) -> bool:
        """Whether the last trade price already meets ``o``'s trigger. O(1)."""
        last = self.last_price
        if not last:
            return False
        return last >= o.stop_price if o.above else last <= o.stop_price

    def _arm(self, o: Order) -> None:
        """Put an untriggered stop in its trigger list (``o.above`` says which). O(log n)."""
        (self.stops_above if o.above else self.stops_below).add((o.stop_price, o.order_id))
        self._armed += 1

    def _disarm(self, o: Order) -> None:
        """Take an untriggered stop out of its trigger list (if it is there). O(log n)."""
        key = (o.stop_price, o.order_id)
        stops = self.stops_above if o.above else self.stops_below
        if key in stops:
            stops.remove(key)
            self._armed -= 1

    def _triggered_by(self, price: int) -> list[Order]:
        """Take out every untriggered stop a print at ``price`` meets, in priority order.
        O(k log n) for k triggered; O(1) when none."""
        hit: list[Order] = []
        orders = self.orders
        above = self.stops_above
        if above and above[0][0] <= price:
            while above and above[0][0] <= price:
                hit.append(orders[above.pop(0)[1]])
        below = self.stops_below
        if below and below[-1][0] >= price:
            while below and below[-1][0] >= price:
                hit.append(orders[below.pop()[1]])
        self._armed -= len(hit)
        if len(hit) > 1:
            hit.sort(key=_prio)
        return hit

    def _run_stops(self, ts: int, mark: int, events: list[Event]) -> None:
        """Trigger the stops this command's prints (``events[mark:]``) meet, breadth first.

        Every print not yet examined is examined (its stops queued in priority
        order) before the next queued stop executes; a stop's own prints are
        examined after it. Stops already met on acceptance go first. O(events
        of the command) plus the triggered stops' own work.
        """
        queue = deque(self._pending)
        self._pending.clear()
        i = mark
        while True:
            n = len(events)
            while i < n:
                e = events[i]
                i += 1
                if type(e) is Trade:
                    queue.extend(self._triggered_by(e.price))
            if not queue:
                return
            self._trigger(ts, queue.popleft(), events)

    def _trigger(self, ts: int, o: Order, events: list[Event]) -> None:
        """A stop's trigger was met: it becomes the order it stands for, placed now."""
        self._forget(o)
        o.untriggered = False
        o.above = False
        self._report(ts, o, "triggered", "new", events)
        if not o.at_market and (o.tif == "GTC" or o.tif == "GTD") and not self._crosses(o):
            self._rest(o)
        elif o.quote_qty:
            self._execute_budget(ts, o, o.quote_qty, events)
        else:
            self._execute(ts, o, events)

    # -- GTD ------------------------------------------------------------------

    def _expire_due(self, ts: int, events: list[Event]) -> None:
        """Expire every open order whose ``expire_time`` the clock ``ts`` reached, earliest
        first (priority among equal times). O(k log n) for k expired."""
        expiries = self.expiries
        due: list[Order] = []
        while expiries and expiries[0][0] <= ts:
            due.append(self.orders[expiries.pop(0)[1]])
        due.sort(key=_expiry_order)
        for o in due:
            if o.untriggered:
                self._disarm(o)
                self._forget(o)
            else:
                self._unrest(o)
            o.leaves = 0
            self._report(ts, o, "expired", "expired", events, errors.EXPIRED)
        self._next_expiry = expiries[0][0] if expiries else _NEVER

    def _crosses(self, o: Order) -> bool:
        if o.side == "buy":
            best = self.best_ask_price
            return best is not None and (o.at_market or best <= o.price)
        best = self.best_bid_price
        return best is not None and (o.at_market or best >= o.price)

    def _execute(self, ts: int, o: Order, events: list[Event]) -> None:
        """Match a new (or repriced) order as taker, then rest or expire its remainder."""
        if o.tif == "FOK" and self._fillable(o) < o.leaves:
            o.leaves = 0
            self._report(ts, o, "expired", "expired", events, errors.FOK_UNFILLABLE)
            return
        stopped_by_stp = self._match(ts, o, events) if self._crosses(o) else False
        if o.leaves == 0:
            return
        if stopped_by_stp:
            o.leaves = 0
            self._report(ts, o, "expired", "expired", events, errors.STP)
        elif (o.tif == "GTC" or o.tif == "GTD") and not o.at_market:
            self._rest(o)
        else:
            o.leaves = 0
            self._report(ts, o, "expired", "expired", events,
                         errors.NO_LIQUIDITY if o.at_market else None)

    def _fillable(self, o: Order) -> int:
        """How much of ``o`` matching would fill right now, honouring its limit and STP.

        Icebergs count whole: a level is walked as matching would walk it, a
        maker whose slice is used up going to the back with its next slice, so
        an STP stop behind an iceberg's first slice is found where matching
        finds it. O(fills) (FOK orders only).
        """
        need = o.leaves
        avail = 0
        buy = o.side == "buy"
        prices = self.ask_prices if buy else reversed(self.bid_prices)
        levels = self.asks if buy else self.bids
        limit = None if o.at_market else o.price
        account, stp = o.account, o.stp
        for price in prices:
            if limit is not None and (price > limit if buy else price < limit):
                break
            queue = deque((m.account, m.shown, m.leaves, m.display)
                          for m in levels[price].orders.values())
            while queue:
                maker_account, shown, leaves, display = queue.popleft()
                if stp != "none" and maker_account == account:
                    if stp == "cancel_maker":
                        continue
                    return avail
                avail += shown
                if avail >= need:
                    return avail
                leaves -= shown
                if leaves:  # an iceberg's next slice, at the back of the level
                    queue.append((maker_account, min(display, leaves), leaves, display))
        return avail

    def _match(self, ts: int, o: Order, events: list[Event]) -> bool:
        """Fill ``o`` against the opposite side; True if STP stopped the taker."""
        buy = o.side == "buy"
        if buy:
            levels, touched = self.asks, self._touched_asks
        else:
            levels, touched = self.bids, self._touched_bids
        limit = None if o.at_market else o.price
        account, stp, taker_id = o.account, o.stp, o.order_id
        maker_side = "sell" if buy else "buy"
        fee = self._fee
        per_tick_lot = self._per_tick_lot
        maker_fee = taker_fee = 0
        seq = self.seq
        while o.leaves:
            price = self.best_ask_price if buy else self.best_bid_price
            if price is None:
                break
            if limit is not None and (price > limit if buy else price < limit):
                break
            level = levels[price]
            queue = level.orders
            while o.leaves and queue:
                maker = next(iter(queue.values()))
                if maker.account == account and stp != "none":
                    if stp == "cancel_taker":
                        self.seq = seq
                        return True
                    # cancel_maker or cancel_both: the maker goes first (all of an iceberg).
                    touched[price] = None
                    del queue[maker.order_id]
                    level.total -= maker.shown
                    self._forget(maker)
                    self.seq = seq
                    maker.leaves = 0
                    self._report(ts, maker, "canceled", "canceled", events, errors.STP)
                    seq = self.seq
                    if stp == "cancel_both":
                        if not queue:
                            self._drop_level(maker.side, price)
                        return True
                    continue
                display = maker.display
                avail = maker.visible if display else maker.leaves
                qty = avail if avail < o.leaves else o.leaves
                self.trade_id += 1
                trade_id = self.trade_id
                notional = qty * price
                maker.cum_qty += qty
                maker.leaves -= qty
                maker.cum_notional += notional
                o.cum_qty += qty
                o.leaves -= qty
                o.cum_notional += notional
                level.total -= qty
                touched[price] = None
                maker_done = maker.leaves == 0
                if maker_done:
                    del queue[maker.order_id]
                    self._forget(maker)
                elif display:
                    self._shown_filled(level, maker, qty)
                if fee is not None:
                    quote = notional * per_tick_lot
                    maker_fee, maker.fee_num = fee(maker.fee_num, quote, True)
                    taker_fee, o.fee_num = fee(o.fee_num, quote, False)
                events.append(Trade(seq + 1, ts, trade_id, price, qty, o.side,  # type: ignore[arg-type]
                                    maker.order_id, taker_id))
                # Every field given: msgspec fills a default slower than it takes an argument.
                events.append(Report(
                    seq + 2, ts, maker.account, maker.order_id, maker.client_order_id,
                    maker.side, maker.type, maker.tif, maker.price, maker.qty,  # type: ignore[arg-type]
                    "trade", "filled" if maker_done else "partially_filled", qty, price,
                    maker.cum_qty, maker.leaves, maker.cum_notional, "maker", trade_id, None,
                    maker_fee, maker.stop_price, maker.expire_time, display))
                events.append(Report(
                    seq + 3, ts, account, taker_id, o.client_order_id, o.side, o.type,  # type: ignore[arg-type]
                    o.tif, o.price, o.qty, "trade",  # type: ignore[arg-type]
                    "partially_filled" if o.leaves else "filled", qty, price, o.cum_qty,
                    o.leaves, o.cum_notional, "taker", trade_id, None, taker_fee,
                    o.stop_price, o.expire_time, o.display))
                seq += 3
                self.last_price = price
            if not queue:
                self._drop_level(maker_side, price)
        self.seq = seq
        return False

    def _shown_filled(self, level: Level, maker: Order, qty: int) -> None:
        """An iceberg maker (still open) filled ``qty`` of its slice: when the slice is
        used up, show the next one at the back of the level with a new priority. O(1)."""
        maker.visible -= qty
        if not maker.visible:
            maker.visible = maker.display if maker.display < maker.leaves else maker.leaves
            level.total += maker.visible
            self.prio += 1
            maker.prio = self.prio
            level.orders.move_to_end(maker.order_id)

    def _execute_budget(self, ts: int, o: Order, budget: int, events: list[Event]) -> None:
        """Fill a market buy by budget (``quote_qty``) against the asks; it never rests.

        At each maker it takes the largest ``k`` lots (at most the maker's) whose
        notional ``k * u`` (``u`` = quote units of a lot at this price) plus the
        fee they add fit in ``left``, the budget not yet spent. With ``F`` the
        order's ``fee_num``, ``D`` = ``fee_den``, ``t`` = taker rate numerator
        and ``C = ceil(F / D)`` (fees charged so far), the fill pays
        ``k*u + ceil((F + k*u*t) / D) - C``, which fits iff
        ``k*u*(D + t) <= (left + C) * D - F`` (``k*u`` is an integer), so
        ``k = ((left + C) * D - F) // (u * (D + t))``: exact, no loop per lot.

        Its reports' ``qty`` is the quantity filled so far and ``leaves_qty`` 0.
        A fill that leaves too little for one more lot at its own price (asks
        further on are never cheaper) is ``filled``: the budget is spent as far
        as lots allow, as a Binance ``quoteOrderQty`` order ends ``FILLED``.
        Otherwise the order ends with one ``expired`` report (its ``cum_qty``
        may be 0): reason ``STP`` if self-trade prevention stopped it, else
        ``NO_LIQUIDITY``: no ask is left, or none the rest of the budget can pay
        for a lot of (Binance: ``EXPIRED``, the book could not fill it).
        """
        market = self.market
        den = market.fee_den
        scale = den + market.taker_num  # (D + t): quote units * D per unit of notional
        fee = market.fee
        per_tick_lot = market.quote_per_tick_lot
        levels, touched = self.asks, self._touched_asks
        account, stp, taker_id = o.account, o.stp, o.order_id
        left = budget
        reason: str | None = errors.NO_LIQUIDITY
        done = False
        seq = self.seq
        while not done:
            price = self.best_ask_price
            if price is None:
                break
            level = levels[price]
            queue = level.orders
            unit = price * per_tick_lot * scale
            while queue:
                maker = next(iter(queue.values()))
                if maker.account == account and stp != "none":
                    if stp == "cancel_taker":
                        reason = errors.STP
                        done = True
                        break
                    touched[price] = None
                    del queue[maker.order_id]
                    level.total -= maker.shown
                    self._forget(maker)
                    self.seq = seq
                    maker.leaves = 0
                    self._report(ts, maker, "canceled", "canceled", events, errors.STP)
                    seq = self.seq
                    if stp == "cancel_both":
                        reason = errors.STP
                        done = True
                        break
                    continue
                fee_num = o.fee_num
                fits = ((left - (-fee_num // den)) * den - fee_num) // unit
                if fits == 0:
                    done = True  # not one lot more at this price, nor at any later one
                    break
                display = maker.display
                avail = maker.visible if display else maker.leaves
                qty = avail if avail < fits else fits
                self.trade_id += 1
                trade_id = self.trade_id
                notional = qty * price
                quote = notional * per_tick_lot
                maker_fee, maker.fee_num = fee(maker.fee_num, quote, True)
                taker_fee, fee_num = fee(fee_num, quote, False)
                o.fee_num = fee_num
                left -= quote + taker_fee
                maker.cum_qty += qty
                maker.leaves -= qty
                maker.cum_notional += notional
                o.cum_qty += qty
                o.qty = o.cum_qty
                o.cum_notional += notional
                level.total -= qty
                touched[price] = None
                maker_done = maker.leaves == 0
                if maker_done:
                    del queue[maker.order_id]
                    self._forget(maker)
                elif display:
                    self._shown_filled(level, maker, qty)
                # Filled: the rest cannot pay for one more lot at this price.
                done = ((left - (-fee_num // den)) * den - fee_num) < unit
                events.append(Trade(seq + 1, ts, trade_id, price, qty, "buy",
                                    maker.order_id, taker_id))
                events.append(Report(
                    seq + 2, ts, maker.account, maker.order_id, maker.client_order_id,
                    maker.side, maker.type, maker.tif, maker.price, maker.qty,  # type: ignore[arg-type]
                    "trade", "filled" if maker_done else "partially_filled", qty, price,
                    maker.cum_qty, maker.leaves, maker.cum_notional, "maker", trade_id, None,
                    maker_fee, maker.stop_price, maker.expire_time, display))
                events.append(Report(
                    seq + 3, ts, account, taker_id, o.client_order_id, "buy", o.type,  # type: ignore[arg-type]
                    o.tif, 0, o.qty, "trade",  # type: ignore[arg-type]
                    "filled" if done else "partially_filled", qty, price, o.cum_qty,
                    0, o.cum_notional, "taker", trade_id, None, taker_fee,
                    o.stop_price, o.expire_time, 0))
                seq += 3
                self.last_price = price
                if done:
                    reason = None
                    break
            if not queue:
                self._drop_level("sell", price)
        self.seq = seq
        if reason is not None:
            self._report(ts, o, "expired", "expired", events, reason)

    def _rest(self, o: Order) -> None:
        self.prio += 1
        o.prio = self.prio
        price = o.price
        if o.side == "buy":
            levels, prices, touched = self.bids, self.bid_prices, self._touched_bids
        else:
            levels, prices, touched = self.asks, self.ask_prices, self._touched_asks
        level = levels.get(price)
        if level is None:
            level = levels[price] = Level(price)
            prices.add(price)
            if o.side == "buy":
                if self.best_bid_price is None or price > self.best_bid_price:
                    self.best_bid_price = price
            elif self.best_ask_price is None or price < self.best_ask_price:
                self.best_ask_price = price
        level.orders[o.order_id] = o
        if not o.extra:
            level.total += o.leaves
        else:
            if o.display:
                o.visible = o.display if o.display < o.leaves else o.leaves
                level.total += o.visible
            else:
                level.total += o.leaves
            if o.expire_time:
                self._add_expiry(o)
        touched[price] = None
        self.orders[o.order_id] = o
        acct = self.by_account.get(o.account)
        if acct is None:
            acct = self.by_account[o.account] = {}
        acct[o.order_id] = o
        if o.client_order_id is not None:
            self.client_ids[(o.account, o.client_order_id)] = o

    def _index(self, o: Order) -> None:
        """Make an order findable by id, account, client id and expiry (not by level: an
        untriggered stop is off-book)."""
        self.orders[o.order_id] = o
        self.by_account.setdefault(o.account, {})[o.order_id] = o
        if o.client_order_id is not None:
            self.client_ids[(o.account, o.client_order_id)] = o
        if o.expire_time:
            self._add_expiry(o)

    def _add_expiry(self, o: Order) -> None:
        self.expiries.add((o.expire_time, o.order_id))
        if o.expire_time < self._next_expiry:
            self._next_expiry = o.expire_time

    def _drop_expiry(self, o: Order) -> None:
        """Forget a GTD order's expiry (it ended, or it is being expired). O(log n)."""
        expiries = self.expiries
        expiries.discard((o.expire_time, o.order_id))
        self._next_expiry = expiries[0][0] if expiries else _NEVER

    def _forget(self, o: Order) -> None:
        """Drop ``o`` from the indexes (not from its level or trigger list)."""
        del self.orders[o.order_id]
        acct = self.by_account[o.account]
        del acct[o.order_id]
        if not acct:
            del self.by_account[o.account]
        if o.client_order_id is not None:
            del self.client_ids[(o.account, o.client_order_id)]
        if o.extra and o.expire_time:
            self._drop_expiry(o)

    def _unrest(self, o: Order) -> None:
        """Remove a resting order from its level and the indexes. O(1), O(log L) if emptied."""
        if o.side == "buy":
            levels, touched = self.bids, self._touched_bids
        else:
            levels, touched = self.asks, self._touched_asks
        price = o.price
        level = levels[price]
        oid = o.order_id
        del level.orders[oid]
        if o.extra:
            level.total -= o.visible if o.display else o.leaves
            if o.expire_time:
                self._drop_expiry(o)
        else:
            level.total -= o.leaves
        touched[price] = None
        if not level.orders:
            self._drop_level(o.side, price)
        # _forget(o), inlined: this runs for every cancel.
        del self.orders[oid]
        acct = self.by_account[o.account]
        del acct[oid]
        if not acct:
            del self.by_account[o.account]
        if o.client_order_id is not None:
            del self.client_ids[(o.account, o.client_order_id)]

    # -- cancel, amend, cancel_all ---------------------------------------------

    def _find(self, account: str, order_id: str | None, client_order_id: str | None
              ) -> Order | None:
        if order_id is not None:
            o = self.orders.get(order_id)
            if o is None or o.account != account:
                return None
            if client_order_id is not None and o.client_order_id != client_order_id:
                return None
            return o
        if client_order_id is not None:
            return self.client_ids.get((account, client_order_id))
        return None

    def _cancel(self, input_id: str, ts: int, cmd: Cancel, events: list[Event]) -> None:
        account = cmd.account
        order_id = cmd.order_id
        client_order_id = cmd.client_order_id
        o = self._find(account, order_id, client_order_id)
        if o is None:
            self._reject_cancel(ts, input_id, account, order_id, client_order_id,
                                errors.UNKNOWN_ORDER, events)
            return
        if o.extra:
            self._close(o)
            o.leaves = 0
            self._report(ts, o, "canceled", "canceled", events, errors.USER_CANCEL)
            return
        self._unrest(o)
        o.leaves = 0
        self.seq += 1
        events.append(Report(
            self.seq, ts, o.account, o.order_id, o.client_order_id, o.side, o.type,  # type: ignore[arg-type]
            o.tif, o.price, o.qty, "canceled", "canceled", 0, 0, o.cum_qty, 0,  # type: ignore[arg-type]
            o.cum_notional, None, None, errors.USER_CANCEL, 0, 0, 0, 0,
        ))

    def _close(self, o: Order) -> None:
        """Take an open order out of the book, resting or untriggered. O(1) / O(log n)."""
        if o.untriggered:
            self._disarm(o)
            self._forget(o)
        else:
            self._unrest(o)

    def _amend(self, input_id: str, ts: int, cmd: Amend, events: list[Event]) -> None:
        account = cmd.account
        order_id = cmd.order_id
        client_order_id = cmd.client_order_id
        qty = cmd.qty
        price = cmd.price
        stop = cmd.stop_price
        o = self._find(account, order_id, client_order_id)
        reason = None
        if o is None:
            reason = errors.UNKNOWN_ORDER
        else:
            new_qty = o.qty if qty is None else qty
            new_price = o.price if price is None else price
            new_stop = o.stop_price if stop is None else stop
            if ((qty is None and price is None and stop is None)
                    or (stop is not None and not o.untriggered)  # not a waiting stop
                    or (price is not None and o.at_market)  # no limit price to change
                    or (qty is not None and o.quote_qty)):  # a budget has no quantity
                reason = errors.BAD_REQUEST
            elif qty is not None and (new_qty <= o.cum_qty
                                      or not self._min_lots <= new_qty <= self._max_lots):
                reason = errors.INVALID_QTY
            elif not o.at_market and not self._min_ticks <= new_price <= self._max_ticks:
                reason = errors.INVALID_PRICE
            elif o.untriggered and not self._min_ticks <= new_stop <= self._max_ticks:
                reason = errors.INVALID_STOP_PRICE
            elif o.post_only and new_price != o.price and self._would_take(o.side, new_price):
                reason = errors.POST_ONLY_WOULD_TAKE
        if reason is not None or o is None:
            self._reject_cancel(ts, input_id, account, order_id, client_order_id,
                                reason or errors.UNKNOWN_ORDER, events)
            return
        if o.untriggered:
            self._amend_untriggered(ts, o, new_qty, new_price, new_stop, events)
            return
        if new_price == o.price and new_qty <= o.qty:
            # Same price, not larger: keeps its place in the queue.
            delta = o.qty - new_qty
            if delta:
                levels, touched = ((self.bids, self._touched_bids) if o.side == "buy"
                                   else (self.asks, self._touched_asks))
                level = levels[o.price]
                o.qty = new_qty
                o.leaves -= delta
                if o.display:  # an iceberg shows at most what is left
                    shown = o.visible if o.visible < o.leaves else o.leaves
                    if shown != o.visible:  # a smaller hidden part alone is no book change
                        level.total -= o.visible - shown
                        o.visible = shown
                        touched[o.price] = None
                else:
                    level.total -= delta
                    touched[o.price] = None
            self._report(ts, o, "replaced", o.status, events)
            return
        # Price change or quantity increase: cancel + reinsert, may match at once.
        self._unrest(o)
        o.price = new_price
        o.qty = new_qty
        o.leaves = new_qty - o.cum_qty
        self._report(ts, o, "replaced", o.status, events)
        self._execute(ts, o, events)

    def _amend_untriggered(self, ts: int, o: Order, qty: int, price: int, stop_price: int,
                           events: list[Event]) -> None:
        """Amend a stop still waiting: a new trigger or a larger quantity puts it behind the
        other stops (a new priority); one the last trade already meets triggers now."""
        self._disarm(o)
        if stop_price != o.stop_price or qty > o.qty:
            self.prio += 1
            o.prio = self.prio
        o.stop_price = stop_price
        o.price = price
        o.qty = o.leaves = qty
        self._report(ts, o, "replaced", "untriggered", events)
        if self._met(o):
            self._pending.append(o)
        else:
            self._arm(o)

    def _would_take(self, side: str, price: int) -> bool:
        if side == "buy":
            return self.best_ask_price is not None and self.best_ask_price <= price
        return self.best_bid_price is not None and self.best_bid_price >= price

    def _drop_level(self, side: str, price: int) -> None:
        """Remove an emptied level's price and refresh the cached best. O(log L)."""
        if side == "buy":
            del self.bids[price]
            prices = self.bid_prices
            prices.remove(price)
            if price == self.best_bid_price:
                self.best_bid_price = prices[-1] if prices else None
        else:
            del self.asks[price]
            prices = self.ask_prices
            prices.remove(price)
            if price == self.best_ask_price:
                self.best_ask_price = prices[0] if prices else None

    def _cancel_all(self, ts: int, cmd: CancelAll, events: list[Event]) -> None:
        acct = self.by_account.get(cmd.account)
        if not acct:
            return
        if cmd.order_ids is None:
            victims = list(acct.values())
        else:
            victims = [acct[i] for i in dict.fromkeys(cmd.order_ids) if i in acct]
        victims.sort(key=_prio)
        for o in victims:
            self._close(o)
            o.leaves = 0
            self._report(ts, o, "canceled", "canceled", events, cmd.reason)

    # -- invariants -----------------------------------------------------------

    def _check(self) -> None:
        """Assert every invariant of the book. O(number of orders)."""
        assert list(self.bid_prices) == sorted(self.bids), "bid price index != levels"
        assert list(self.ask_prices) == sorted(self.asks), "ask price index != levels"
        assert self.best_bid_price == (self.bid_prices[-1] if self.bid_prices else None)
        assert self.best_ask_price == (self.ask_prices[0] if self.ask_prices else None)
        if self.bid_prices and self.ask_prices:
            assert self.bid_prices[-1] < self.ask_prices[0], "book is crossed"
        market = self.market
        per_tick_lot, taker_num = market.quote_per_tick_lot, market.taker_num
        seen: dict[str, Order] = {}
        for side, levels in (("buy", self.bids), ("sell", self.asks)):
            for price, level in levels.items():
                assert level.price == price
                assert level.orders, f"empty level {side} {price}"
                assert level.total == sum(o.shown for o in level.orders.values()), \
                    f"level total wrong at {side} {price}"
                last_prio = 0
                for oid, o in level.orders.items():
                    assert oid == o.order_id and o.side == side and o.price == price
                    assert 0 < o.leaves == o.qty - o.cum_qty, f"bad leaves {oid}"
                    assert o.type in LIMIT_TYPES and o.tif in ("GTC", "GTD")
                    assert not o.untriggered and not o.at_market and not o.quote_qty
                    if o.display:
                        assert 0 < o.visible <= min(o.display, o.leaves), f"bad slice {oid}"
                    assert o.prio > last_prio, f"priority out of order at {side} {price}"
                    assert 0 <= o.fee_num <= o.cum_notional * per_tick_lot * taker_num, \
                        f"fee_num {o.fee_num} beyond the taker rate of its fills: {oid}"
                    last_prio = o.prio
                    assert oid not in seen
                    seen[oid] = o
        stops = {oid for _, oid in self.stops_above} | {oid for _, oid in self.stops_below}
        assert len(stops) == len(self.stops_above) + len(self.stops_below) == self._armed
        assert not self._pending
        for key, above in [(k, True) for k in self.stops_above] + [
                (k, False) for k in self.stops_below]:
            o = self.orders[key[1]]
            assert o.untriggered and o.above == above and key[0] == o.stop_price
            assert o.above == triggers_above(o.type, o.side)
            assert not self._met(o), f"untriggered stop {o.order_id} whose trigger is met"
            assert o.leaves == o.qty and not o.cum_qty and o.order_id not in seen
            seen[o.order_id] = o
        assert seen.keys() == self.orders.keys(), "order index != levels + stops"
        gtd = {(o.expire_time, oid) for oid, o in seen.items() if o.expire_time}
        assert gtd == set(self.expiries), "expiry index != GTD orders"
        assert all(t > self.clock for t, _ in gtd), "a GTD order alive past its time"
        assert self._next_expiry == (self.expiries[0][0] if self.expiries else _NEVER)
        assert all(self.orders[k] is v for k, v in seen.items())
        by_acct = {(o.account, k) for k, o in seen.items()}
        assert by_acct == {(a, k) for a, d in self.by_account.items() for k in d}
        assert all(d for d in self.by_account.values()), "empty account entry"
        coids = {(o.account, o.client_order_id): o for o in seen.values()
                 if o.client_order_id is not None}
        assert coids == self.client_ids, "client order id index != orders"
        assert not self._touched_bids and not self._touched_asks
        assert all(type(k) is int and type(v) is int and k >= 0 and v >= 0
                   for k, v in self.risk_seqs.items()), "bad risk_seqs"


def _changes(levels: dict[int, Level], touched: dict[int, None], descending: bool
             ) -> tuple[tuple[int, int], ...]:
    """The touched prices and their levels' totals (0: the level is gone), best first
    (``descending`` for bids); clears ``touched``. O(k log k), one tuple when k is 1."""
    if len(touched) == 1:
        price = 0
        for p in touched:
            price = p
        touched.clear()
        level = levels.get(price)
        return ((price, 0 if level is None else level.total),)
    changes = tuple([(p, 0 if (lvl := levels.get(p)) is None else lvl.total)
                     for p in sorted(touched, reverse=descending)])
    touched.clear()
    return changes


def _resting(o: Order) -> RestingOrder:
    return _RESTING(o.order_id, o.account, o.client_order_id, o.side, o.price, o.qty,
                    o.cum_qty, o.cum_notional, o.post_only, o.stp, o.prio, o.fee_num, o.type,
                    o.tif, o.stop_price, o.expire_time, o.display, o.visible, o.untriggered,
                    o.quote_qty)


def _prio(o: Order) -> int:
    return o.prio


def _expiry_order(o: Order) -> tuple[int, int]:
    return (o.expire_time, o.prio)


def _order_type_reason(market: Market, cmd: Place, stop: bool, is_limit: bool) -> str | None:
    """Why a place using section B's fields is refused (``stop_price``, ``GTD``,
    ``display_qty``), or None. O(1); only orders that use one of them pay for it."""
    if stop:
        if not market.min_ticks <= cmd.stop_price <= market.max_ticks:
            return errors.INVALID_STOP_PRICE
    elif cmd.stop_price:
        return errors.BAD_REQUEST
    if cmd.tif == "GTD":
        if cmd.expire_time <= 0:
            return errors.INVALID_EXPIRE_TIME
        if cmd.type == "market":
            return errors.BAD_REQUEST
    elif cmd.expire_time:
        return errors.INVALID_EXPIRE_TIME
    if cmd.display_qty:
        if not 0 < cmd.display_qty <= cmd.qty:
            return errors.INVALID_QTY
        if not is_limit or cmd.tif in ("IOC", "FOK"):
            return errors.BAD_REQUEST
    if stop and cmd.post_only:
        return errors.BAD_REQUEST
    return None
