"""Differential tests: the engine's book against the simple reference matcher.

Every command goes to both; the full event lists must be equal (and encode to
the same bytes), the books must agree on depth, open orders per account and
the exact queue order (untriggered stops included, with every snapshot field),
and ``OrderBook._check()`` must pass after each one.

Markets with and without maker/taker fees; market buys by budget; commands
forwarded by the risk stage, as raw entries through
``matching.apply.apply_entries``, re-forwarded now and then (a replay must be
dropped without any event, exactly once applied); and the order types of
PROTOCOL section B: stops and take-profits of the four types (triggered at
once, by later trades, in cascades; amended, canceled), GTD orders expired by
later commands and by ``Clock`` entries, icebergs.

Besides the comparison, the book must keep the section B rules on its own: no
untriggered stop whose condition a trade since its acceptance met, no GTD order
open past its ``expire_time``, depth made of the icebergs' shown slices only;
and a second book, restarted from its own snapshot (encode, decode, restore)
at random points, must give the same events as the uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from reference_matcher import (
    ACCOUNTS,
    BUY_PRICES,
    CLIENT_IDS,
    EXPIRY_OFFSETS,
    FEE_MARKET,
    FINE_FEE_MARKET,
    PRICES,
    QTYS,
    SELL_PRICES,
    STOP_LIMIT_TIFS,
    STOP_MARKET_TIFS,
    STOP_ORDER_TYPES,
    STOP_PRICES,
    STP_MODES,
    WORKLOAD_MARKET,
    WORKLOAD_MARKETS,
    QueueEntry,
    ReferenceMatcher,
    Workload,
    budget_of,
)

from contract.commands import (
    LIMIT_TYPES,
    MARKET_TYPES,
    STOP_TYPES,
    Amend,
    Cancel,
    CancelAll,
    Clock,
    Command,
    OrderType,
    Place,
    Side,
    StpMode,
    Tif,
    encode_command,
    report_tif,
    triggers_above,
)
from contract.events import Event, Report, Trade, decode_events, encode_events
from contract.market import Market
from contract.snapshot import RestingOrder, decode_snapshot, encode_snapshot
from contract.streams import forward_entry
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import restore_book, take_snapshot

MARKET = WORKLOAD_MARKET


def queue_entry(r: RestingOrder, fee_den: int) -> QueueEntry:
    """A snapshot's order as :meth:`ReferenceMatcher.queue` states it."""
    return (r.order_id, r.account, r.client_order_id, r.side, r.price, r.qty, r.cum_qty,
            r.cum_notional, r.post_only, r.stp, Fraction(r.fee_num, fee_den), r.prio, r.type,
            report_tif(r.type, r.tif), r.stop_price, r.expire_time, r.display_qty,
            r.visible if r.display_qty and not r.untriggered else None, r.untriggered,
            r.quote_qty)


def assert_same_state(book: OrderBook, ref: ReferenceMatcher) -> None:
    """Depth, best prices, open orders per account, queue order and counters agree."""
    book._check()
    assert book.depth("buy") == ref.depth("buy")
    assert book.depth("sell") == ref.depth("sell")
    bids, asks = ref.book()
    assert book.best_bid() == (bids[0][0] if bids else None)
    assert book.best_ask() == (asks[0][0] if asks else None)
    for account in ACCOUNTS:
        got = [(o.order_id, o.client_order_id, o.side, o.price, o.qty, o.cum_qty,
                o.cum_notional) for o in book.open_orders(account)]
        assert got == ref.open_orders(account), account
    den = book.market.fee_den
    assert [queue_entry(r, den) for r in take_snapshot(book).orders] == ref.queue()
    assert (book.seq, book.trade_id, book.prio) == (ref.seq, ref.trade_id, ref.prio)
    assert book.risk_seqs == ref.risk_seqs


def assert_order_type_rules(book: OrderBook, audit: EventAudit) -> None:
    """Section B's rules, from the book's own snapshot and the events it gave.

    No untriggered stop whose condition a trade met since it was accepted or last
    amended (the last price at that moment included); no GTD order open at or past
    its ``expire_time`` at the clock of the last command; every level's total is the
    sum of its orders' shown parts (an iceberg's slice, never its hidden rest).
    """
    shown: dict[tuple[str, int], int] = {}
    for r in take_snapshot(book).orders:
        if r.tif == "GTD":
            assert r.expire_time > audit.clock, f"GTD order {r.order_id} open past its expiry"
        if r.untriggered:
            above = triggers_above(r.type, r.side)
            missed = [p for p in audit.prints[audit.watched_from[r.order_id]:]
                      if (p >= r.stop_price if above else p <= r.stop_price)]
            assert not missed, f"stop {r.order_id} at {r.stop_price} missed trades {missed}"
            continue
        leaves = r.qty - r.cum_qty
        if r.display_qty:
            assert 0 < r.visible <= min(r.display_qty, leaves), f"iceberg {r.order_id}"
        key = (r.side, r.price)
        shown[key] = shown.get(key, 0) + (r.visible if r.display_qty else leaves)
    depth = [(("buy", p), q) for p, q in book.depth("buy")] + \
        [(("sell", p), q) for p, q in book.depth("sell")]
    assert dict(depth) == shown, "a level's total is not its orders' shown parts"


class Feeder:
    """Applies each command to the book and the reference, directly or as forwarded.

    A forwarded command is a raw ``:in`` entry (``forward_entry``) applied with
    ``apply_entries``; the feeder remembers what it forwarded so that it can
    re-forward an old entry (under a new market entry id), which both must drop.
    ``restarted`` gets every command too and is rebuilt from its own snapshot by
    :meth:`restart`: its events must be the uninterrupted book's.
    """

    def __init__(self, market: Market) -> None:
        self.book = OrderBook(market)
        self.restarted = OrderBook(market)
        self.ref = ReferenceMatcher(market)
        self.audit = EventAudit()
        self.risk_seq = {0: 0, 3: 0}  # shard -> the last risk_seq issued
        self.forwarded: list[list[bytes]] = []
        self.risk_ids = 0
        self.dropped = 0
        self.restarts = 0
        self.last_input_id = "0-0"

    def direct(self, input_id: str, cmd: Command) -> list[Event]:
        want = self.ref.apply(input_id, cmd)
        got = self.book.apply(input_id, cmd)
        assert self.restarted.apply(input_id, cmd) == got, ("after a restart", input_id, cmd)
        self.check(input_id, got, want, cmd)
        return got

    def forward(self, input_id: str, cmd: Command, shard: int, gap: int = 1) -> tuple[
            str, list[Event]]:
        """Forward ``cmd`` as risk shard ``shard``'s next command; ``(its order id, events)``."""
        self.risk_seq[shard] += gap
        self.risk_ids += 1
        order_id = f"{1_600_000_000_000 + self.risk_ids}-0-{shard}"
        fields = forward_entry(encode_command(cmd), shard, self.risk_seq[shard], order_id)
        self.forwarded.append(fields)
        want = self.ref.apply_forwarded(input_id, shard, self.risk_seq[shard], order_id, cmd)
        got: list[Event] = []
        apply_entries(self.book, [[input_id.encode(), fields]], got)
        again: list[Event] = []
        apply_entries(self.restarted, [[input_id.encode(), fields]], again)
        assert again == got, ("after a restart", input_id, cmd)
        self.check(input_id, got, want, cmd)
        return order_id, got

    def replay(self, input_id: str, index: int) -> None:
        """Re-forward the ``index``-th forwarded entry: dropped, no event, nothing changes."""
        for book in (self.book, self.restarted):
            seq = book.seq
            got: list[Event] = []
            apply_entries(book, [[input_id.encode(), self.forwarded[index]]], got)
            assert got == [] and book.seq == seq
        self.dropped += 1

    def restart(self) -> None:
        """Rebuild ``restarted`` from its snapshot, through the bytes the engine stores."""
        snap = decode_snapshot(encode_snapshot(take_snapshot(self.restarted,
                                                             self.last_input_id)))
        self.restarted = restore_book(self.restarted.market, snap)
        self.restarted._check()
        assert take_snapshot(self.restarted, self.last_input_id) == snap
        self.restarts += 1

    def check(self, input_id: str, got: list[Event], want: list[Event], cmd: Command) -> None:
        assert got == want, (input_id, cmd)
        encoded = encode_events(got)
        assert encoded == encode_events(want)
        assert decode_events(encoded) == got
        self.audit.check(input_id, got, self.book.market)
        self.last_input_id = input_id


class EventAudit:
    """Checks the report invariants on their own, independently of the reference.

    Also keeps what the section B checks need: every trade price in print order,
    the clock of the last command, and for each untriggered stop the index of the
    first print it must have seen (the last one before its acceptance or amend).
    """

    def __init__(self) -> None:
        self.seq = 0
        self.trade_id = 0
        self.clock = 0
        self.fills: dict[str, tuple[int, int]] = {}  # order_id -> (cum_qty, cum_notional)
        self.fees: dict[str, tuple[int, int]] = {}  # order_id -> (fees paid, exact x fee_den)
        self.prints: list[int] = []
        self.watched_from: dict[str, int] = {}  # untriggered stop -> first print to examine

    def check(self, input_id: str, events: Iterable[Event], market: Market = MARKET) -> None:
        ts = int(input_id.split("-")[0])
        self.clock = ts
        for e in events:
            assert e.seq == self.seq + 1, "seq not contiguous"
            self.seq = e.seq
            assert e.ts == ts
            if isinstance(e, Trade):
                assert e.trade_id == self.trade_id + 1, "trade ids not consecutive"
                self.trade_id = e.trade_id
                self.prints.append(e.price)
            if not isinstance(e, Report):
                continue
            self._check_order_type(e, ts)
            budget = e.type in MARKET_TYPES and e.side == "buy" and e.qty == e.cum_qty \
                and e.leaves_qty == 0  # a market buy by budget: qty is what it filled
            if e.status in ("new", "partially_filled"):
                assert e.qty == e.cum_qty + e.leaves_qty and (e.leaves_qty > 0 or budget)
            elif e.status != "untriggered":
                assert e.leaves_qty == 0
            cum_qty, notional = self.fills.get(e.order_id, (0, 0))
            if e.exec_type == "trade":
                assert e.liquidity in ("maker", "taker") and e.trade_id == self.trade_id
                if e.liquidity == "maker":
                    assert e.last_price == e.price, "fill not at the maker's price"
                elif e.type in LIMIT_TYPES:
                    assert (e.last_price <= e.price if e.side == "buy"
                            else e.last_price >= e.price), "taker filled through its limit"
                cum_qty, notional = cum_qty + e.last_qty, notional + e.last_qty * e.last_price
                self.fills[e.order_id] = (cum_qty, notional)
                # Fees: the order has paid ceil(its exact fees) after every fill.
                paid, exact = self.fees.get(e.order_id, (0, 0))
                rate = market.maker_num if e.liquidity == "maker" else market.taker_num
                exact += market.notional(e.last_price, e.last_qty) * rate
                paid += e.fee
                assert paid == -(-exact // market.fee_den), "fee not the cumulative ceiling"
                self.fees[e.order_id] = (paid, exact)
            else:
                assert (e.liquidity, e.trade_id, e.last_qty, e.last_price) == (None, None, 0, 0)
                assert e.fee == 0, "a fee on a report that is not a fill"
            assert (e.cum_qty, e.cum_notional) == (cum_qty, notional)

    def _check_order_type(self, e: Report, ts: int) -> None:
        """An untriggered stop never fills and is triggered once; EXPIRED means due."""
        assert e.tif == report_tif(e.type, e.tif)
        assert (e.stop_price != 0) == (e.type in STOP_TYPES) or e.status == "rejected"
        waiting = e.order_id in self.watched_from
        if e.status == "untriggered":
            assert e.type in STOP_TYPES and e.exec_type in ("new", "replaced")
            assert e.cum_qty == 0 and e.leaves_qty == e.qty
            self.watched_from[e.order_id] = max(len(self.prints) - 1, 0)
            return
        if e.exec_type == "triggered":
            assert waiting and e.status == "new" and e.cum_qty == 0, e
        else:
            assert not waiting or e.exec_type in ("canceled", "expired"), e
        self.watched_from.pop(e.order_id, None)
        if e.reason == "EXPIRED":
            assert e.exec_type in ("expired", "rejected") and e.tif == "GTD"
            assert e.expire_time <= ts, "expired before its time"


class MatchingModel(RuleBasedStateMachine):
    """Random commands from 4 accounts in a 7-tick band, checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.feeder = Feeder(MARKET)
        self.ms = 1_700_000_000_000
        self.n = 0
        self.issued: list[tuple[str, str, str | None]] = []

    @initialize(market=st.sampled_from(WORKLOAD_MARKETS))
    def choose_market(self, market: Market) -> None:
        self.feeder = Feeder(market)

    @property
    def book(self) -> OrderBook:
        return self.feeder.book

    @property
    def ref(self) -> ReferenceMatcher:
        return self.feeder.ref

    def next_id(self, same_ms: bool) -> str:
        if same_ms:
            self.n += 1
        else:
            self.ms += 1
            self.n = 0
        return f"{self.ms}-{self.n}"

    def run(self, cmd: Command, same_ms: bool) -> None:
        input_id = self.next_id(same_ms)
        self.feeder.direct(input_id, cmd)
        if isinstance(cmd, Place):
            self.issued.append((input_id, cmd.account, cmd.client_order_id))

    def target(self, data: st.DataObject) -> tuple[str, str | None, str | None]:
        """``(account, order_id, client_order_id)`` of a cancel/amend: mostly a live order."""
        open_orders = [(o.order_id, o.account, o.client_order_id) for o in self.ref.open()]
        pool = data.draw(st.sampled_from(["open", "open", "open", "issued", "unknown"]))
        if pool == "open" and open_orders:
            order_id, owner, coid = data.draw(st.sampled_from(open_orders))
        elif pool != "unknown" and self.issued:
            order_id, owner, coid = data.draw(st.sampled_from(self.issued))
        else:
            order_id, owner, coid = "1-1", data.draw(st.sampled_from(ACCOUNTS)), None
        account = data.draw(st.sampled_from((owner,) * 9 + ACCOUNTS))
        if coid is None:
            coid = data.draw(st.sampled_from(CLIENT_IDS[3:]))
        how = data.draw(st.sampled_from(["order_id"] * 4 + ["client_order_id", "both"]))
        if how == "order_id":
            return account, order_id, None
        if how == "client_order_id":
            return account, None, coid
        return account, order_id, coid

    def expire_time(self, data: st.DataObject) -> int:
        """A GTD expiry a few ms (commands) to seconds after the next command's clock."""
        return self.ms + 1 + data.draw(st.sampled_from(EXPIRY_OFFSETS))

    @invariant()
    def books_agree(self) -> None:
        assert_same_state(self.book, self.ref)
        assert_order_type_rules(self.book, self.feeder.audit)

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          market_order=st.sampled_from((False,) * 7 + (True,)), qty=st.sampled_from(QTYS),
          data=st.data(), tif=st.sampled_from(("GTC", "GTC", "IOC", "FOK", "GTD")),
          post_only=st.sampled_from((False,) * 6 + (True,)),
          coid=st.sampled_from(CLIENT_IDS), stp=st.sampled_from(STP_MODES),
          same_ms=st.booleans())
    def place(self, account: str, side: Side, market_order: bool, qty: int,
              data: st.DataObject, tif: Tif, post_only: bool, coid: str | None, stp: StpMode,
              same_ms: bool) -> None:
        """Limit and market orders: GTD ones too, and icebergs (shown slice below qty)."""
        price = 0 if market_order else data.draw(
            st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        expire_time = self.expire_time(data) if tif == "GTD" else 0
        display_qty = data.draw(st.sampled_from((0, 0, 0, 1, 2, qty - 1, qty + 1)))
        self.run(Place(account, side, "market" if market_order else "limit", qty, price, tif,
                       post_only, coid, stp, 0, 0, expire_time, display_qty), same_ms)

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          qty=st.sampled_from(QTYS), data=st.data(), coid=st.sampled_from(CLIENT_IDS),
          stp=st.sampled_from(STP_MODES), same_ms=st.booleans())
    def place_gtc(self, account: str, side: Side, qty: int, data: st.DataObject,
                  coid: str | None, stp: StpMode, same_ms: bool) -> None:
        """GTC limit orders, the ones that build the book up (placed as often as the rest)."""
        price = data.draw(st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
        self.run(Place(account, side, "limit", qty, price, "GTC", False, coid, stp), same_ms)

    @rule(account=st.sampled_from(ACCOUNTS), side=st.sampled_from(("buy", "sell")),
          type_=st.sampled_from(STOP_ORDER_TYPES), stop_price=st.sampled_from(STOP_PRICES),
          qty=st.sampled_from(QTYS), data=st.data(), coid=st.sampled_from(CLIENT_IDS),
          stp=st.sampled_from(STP_MODES), same_ms=st.booleans())
    def place_stop(self, account: str, side: Side, type_: OrderType, stop_price: int,
                   qty: int, data: st.DataObject, coid: str | None, stp: StpMode,
                   same_ms: bool) -> None:
        """A stop or take-profit near the traded prices: triggered at once, later, or in a
        cascade; a limit near its stop price, GTD, iceberg or FOK at times."""
        if self.ref.last_price is not None and data.draw(st.booleans()):
            stop_price = self.ref.last_price + data.draw(st.integers(-2, 2))
        price = quote_qty = display_qty = 0
        if type_ in LIMIT_TYPES:
            tif: Tif = data.draw(st.sampled_from(STOP_LIMIT_TIFS))
            price = stop_price + data.draw(st.sampled_from((-1, 0, 1, 2))) * (
                1 if side == "buy" else -1)
            if tif in ("GTC", "GTD"):
                display_qty = data.draw(st.sampled_from((0, 0, 0, 1, qty - 1)))
        else:
            tif = data.draw(st.sampled_from(STOP_MARKET_TIFS))
            if side == "buy" and tif != "FOK" and data.draw(st.booleans()):
                qty, quote_qty = 0, budget_of(self.book.market, data.draw(st.integers(0, 900)))
        expire_time = self.expire_time(data) if tif == "GTD" else 0
        self.run(Place(account, side, type_, qty, price, tif, False, coid, stp, quote_qty,
                       stop_price, expire_time, display_qty), same_ms)

    @rule(data=st.data())
    def clock(self, data: st.DataObject) -> None:
        """The engine's clock entry: at the next expiry due, or some ms later."""
        due = [o.expire_time for o in self.ref.open()
               if o.tif == "GTD" and o.expire_time > self.ms]
        at_expiry = data.draw(st.booleans())
        if due and at_expiry:
            self.ms = min(due)
        else:
            self.ms += data.draw(st.integers(1, 40))
        self.n = 0
        self.feeder.direct(f"{self.ms}-0", Clock())

    @rule(account=st.sampled_from(ACCOUNTS), ticks_lots=st.integers(0, 1_500),
          stp=st.sampled_from(STP_MODES), coid=st.sampled_from(CLIENT_IDS),
          same_ms=st.booleans(), forwarded=st.booleans())
    def budget_buy(self, account: str, ticks_lots: int, stp: StpMode, coid: str | None,
                   same_ms: bool, forwarded: bool) -> None:
        """A market buy by budget, from below one lot's cost to a sweep of the asks."""
        cmd = Place(account, "buy", "market", 0, 0, "IOC", False, coid, stp,
                    budget_of(self.book.market, ticks_lots))
        if forwarded:
            self.forward(cmd, same_ms, 0, 1)
        else:
            self.run(cmd, same_ms)

    @rule(data=st.data(), shard=st.sampled_from((0, 3)), gap=st.sampled_from((1, 1, 1, 2)),
          same_ms=st.booleans())
    def forwarded_command(self, data: st.DataObject, shard: int, gap: int,
                          same_ms: bool) -> None:
        """A place, cancel or amend the risk stage forwarded (its own ids)."""
        kind = data.draw(st.sampled_from(["place", "place", "stop", "cancel", "amend"]))
        if kind in ("place", "stop") or not self.issued:
            side: Side = data.draw(st.sampled_from(("buy", "sell")))
            price = data.draw(st.sampled_from(BUY_PRICES if side == "buy" else SELL_PRICES))
            type_: OrderType = "limit"
            stop_price = 0
            if kind == "stop":
                type_ = data.draw(st.sampled_from(("stop_limit", "take_profit_limit")))
                stop_price = data.draw(st.sampled_from(STOP_PRICES))
            cmd: Command = Place(data.draw(st.sampled_from(ACCOUNTS)), side, type_,
                                 data.draw(st.sampled_from(QTYS)), price,
                                 data.draw(st.sampled_from(("GTC", "GTC", "IOC"))), False,
                                 data.draw(st.sampled_from(CLIENT_IDS)), stop_price=stop_price)
        elif kind == "cancel":
            cmd = Cancel(*self.target(data))
        else:
            account, order_id, coid = self.target(data)
            cmd = Amend(account, order_id, coid, data.draw(st.sampled_from(QTYS)), None)
        self.forward(cmd, same_ms, shard, gap)

    def forward(self, cmd: Command, same_ms: bool, shard: int, gap: int) -> None:
        order_id, _ = self.feeder.forward(self.next_id(same_ms), cmd, shard, gap)
        if isinstance(cmd, Place):
            self.issued.append((order_id, cmd.account, cmd.client_order_id))

    @precondition(lambda self: self.feeder.forwarded)
    @rule(data=st.data(), same_ms=st.booleans())
    def reforward(self, data: st.DataObject, same_ms: bool) -> None:
        """The risk stage forwards again an entry the market has applied: dropped."""
        index = data.draw(st.integers(0, len(self.feeder.forwarded) - 1))
        self.feeder.replay(self.next_id(same_ms), index)

    @rule()
    def restart(self) -> None:
        """The second book restarts from its snapshot: it must go on like the first."""
        self.feeder.restart()

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), same_ms=st.booleans())
    def cancel(self, data: st.DataObject, same_ms: bool) -> None:
        self.run(Cancel(*self.target(data)), same_ms)

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), qty=st.sampled_from((None, *QTYS)),
          price=st.sampled_from((None,) * 15 + PRICES),
          stop_price=st.sampled_from((None,) * 6 + STOP_PRICES), same_ms=st.booleans())
    def amend(self, data: st.DataObject, qty: int | None, price: int | None,
              stop_price: int | None, same_ms: bool) -> None:
        account, order_id, coid = self.target(data)
        self.run(Amend(account, order_id, coid, qty, price, stop_price), same_ms)

    @precondition(lambda self: self.issued)
    @rule(account=st.sampled_from(ACCOUNTS), data=st.data(),
          reason=st.sampled_from(("USER_CANCEL", "CANCEL_ON_DISCONNECT")), same_ms=st.booleans())
    def cancel_all(self, account: str, data: st.DataObject, reason: str, same_ms: bool) -> None:
        ids = [i for i, _, _ in self.issued] + ["1-1"]
        order_ids = data.draw(st.none() | st.lists(st.sampled_from(ids), max_size=4))
        self.run(CancelAll(account, order_ids, reason), same_ms)


MatchingModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMatchingModel = MatchingModel.TestCase


def count_kinds(events: list[Event], kinds: dict[str, int]) -> None:
    """Tally what a workload reached: exec types, event classes, fees, budget outcomes,
    section B's triggers, expiries and stop amends."""
    for e in events:
        key = e.exec_type if isinstance(e, Report) else type(e).__name__
        kinds[key] = kinds.get(key, 0) + 1
        if not isinstance(e, Report):
            continue
        if e.fee:
            kinds["fee"] = kinds.get("fee", 0) + 1
        if e.type in MARKET_TYPES and e.qty == e.cum_qty and e.side == "buy" \
                and e.exec_type in ("trade", "expired"):
            kinds[f"budget-{e.status}"] = kinds.get(f"budget-{e.status}", 0) + 1
        for name, hit in (("EXPIRED", e.reason == "EXPIRED"),
                          ("stop amended", e.exec_type == "replaced"
                           and e.status == "untriggered"),
                          ("stop canceled", e.exec_type == "canceled" and e.type in STOP_TYPES),
                          ("iceberg", e.display_qty > 0 and e.exec_type == "trade"),
                          (f"triggered {e.type}", e.exec_type == "triggered")):
            if hit:
                kinds[name] = kinds.get(name, 0) + 1


@pytest.mark.parametrize(("market", "n"), [(WORKLOAD_MARKET, 20_000), (FEE_MARKET, 10_000),
                                           (FINE_FEE_MARKET, 10_000)],
                         ids=["no-fees", "fees", "fine-fees"])
def test_seeded_random_run_matches_reference(market: Market, n: int) -> None:
    """Seeded random commands: same events and same book after each one.

    A tenth of the commands arrive forwarded by one of two risk shards, every
    50th step re-forwards an entry already applied, and the second book restarts
    from its snapshot every few hundred steps.
    """
    rng = random.Random(20240917)
    workload = Workload(random.Random(20240917), market)
    feeder = Feeder(market)
    book, ref = feeder.book, feeder.ref
    kinds: dict[str, int] = {}
    for step in range(n):
        input_id, cmd = workload.next(
            [(o.order_id, o.account, o.client_order_id) for o in ref.open()])
        if step % 50 == 49 and feeder.forwarded:
            feeder.replay(input_id, rng.randrange(len(feeder.forwarded)))
            if isinstance(cmd, Place):
                workload.issued.pop()
            continue
        if rng.random() < 0.003:
            feeder.restart()
        if not isinstance(cmd, Clock) and rng.random() < 0.1:
            order_id, got = feeder.forward(input_id, cmd, rng.choice((0, 3)),
                                           rng.choice((1, 1, 2)))
            if isinstance(cmd, Place):
                workload.issued[-1] = (order_id, cmd.account, cmd.client_order_id)
        else:
            got = feeder.direct(input_id, cmd)
        assert_same_state(book, ref)
        if step % 10 == 0:
            assert_order_type_rules(book, feeder.audit)
        count_kinds(got, kinds)
    # The workload really exercised every outcome.
    for kind in ("new", "trade", "canceled", "expired", "rejected", "replaced", "Trade",
                 "CancelRejected", "BookUpdate", "triggered", "EXPIRED", "iceberg"):
        assert kinds.get(kind, 0) > 100, (kind, kinds)
    for kind in ("budget-filled", "budget-partially_filled", "budget-expired",
                 "stop amended", "stop canceled", *(f"triggered {t}" for t in STOP_ORDER_TYPES)):
        assert kinds.get(kind, 0) > 10, (kind, kinds)
    for path in ("cascade", "triggered at once", "iceberg refill", "GTD expired"):
        assert ref.tally[path] > 10, (path, ref.tally)
    assert feeder.dropped > 100 and book.risk_seqs.keys() == {0, 3}
    assert feeder.restarts > 5
    if market.taker_num:
        assert kinds.get("fee", 0) > 1000, kinds
