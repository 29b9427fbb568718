"""The risk core's rules, one example each, with exact numbers.

Market ``BTC-USD`` with tick 1 and lot 1: a notional is ``price x qty`` quote
units, one lot is one base unit; maker fee 0.1 %, taker fee 0.2 %, rounded
up per order, cumulatively (``Market.fee``).
"""

from __future__ import annotations

import msgspec
import pytest

from contract.commands import Amend, Cancel, CancelAll, Command, Place, decode_command
from contract.events import CancelRejected, InputRejected, Report
from contract.market import Market
from contract.risk import (
    Balance,
    Deposit,
    MarketAnswer,
    RiskCommand,
    RiskEvent,
    Settle,
    ToMarket,
    Transfer,
    Withdraw,
    decode_risk_snapshot,
    encode_risk_command,
    encode_risk_snapshot,
)
from contract.streams import parse_forward_seq
from ledger.core import INSUFFICIENT_FUNDS, Ledger
from ledger.snapshot import restore_ledger, take_risk_snapshot

M = Market("BTC-USD", "BTC", "USD", "1", "1", "1", "1000", "1", "100000",
           maker_fee="0.001", taker_fee="0.002")
ETH = Market("ETH-USD", "ETH", "USD", "1", "1", "1", "1000", "1", "100000")
MARKETS = {M.symbol: M, ETH.symbol: ETH}
SYM = M.symbol


class Driver:
    """Feeds a ledger encoded entries with increasing ids; checks invariants after each."""

    def __init__(self, ledger: Ledger | None = None, ms: int = 1000) -> None:
        self.ledger = ledger or Ledger(0, MARKETS)
        self.ms = ms
        self.out = 0

    def run(self, cmd: RiskCommand) -> list[RiskEvent]:
        self.ms += 1
        events: list[RiskEvent] = []
        self.ledger.apply_entries([[f"{self.ms}-0".encode(),
                                    [b"c", encode_risk_command(cmd)]]], events)
        self.ledger._check()
        return events

    @property
    def last_id(self) -> str:
        return f"{self.ms}-0"

    def to(self, cmd: Command, symbol: str = SYM) -> list[RiskEvent]:
        return self.run(ToMarket(symbol, cmd))

    def settle(self, *events: Report | CancelRejected, symbol: str = SYM) -> list[RiskEvent]:
        self.out += 1
        return self.run(Settle(symbol, f"{self.out}-0", list(events)))

    def bal(self, account: str, asset: str) -> tuple[int, int]:
        return self.ledger.balance(account, asset)


def report(order_id: str, exec_type: str, status: str, *, account: str = "A",
           side: str = "buy", price: int = 100, qty: int = 10, cum_qty: int = 0,
           last_qty: int = 0, last_price: int = 0, liquidity: str | None = None,
           fee: int = 0, type_: str = "limit") -> Report:
    leaves = qty - cum_qty if status in ("new", "partially_filled") else 0
    return Report(0, 0, account, order_id, None, side, type_, "GTC", price,  # type: ignore[arg-type]
                  qty, exec_type, status, last_qty, last_price, cum_qty, leaves,  # type: ignore[arg-type]
                  0, liquidity, 1 if exec_type == "trade" else None, None, fee)  # type: ignore[arg-type]


def balances(events: list[RiskEvent]) -> list[tuple[str, str, int, int]]:
    return [(e.account, e.asset, e.available, e.held) for e in events if isinstance(e, Balance)]


def funded(usd: int = 10_000, btc: int = 0) -> Driver:
    d = Driver()
    d.run(Deposit("A", "USD", usd, "a-usd"))
    if btc:
        d.run(Deposit("A", "BTC", btc, "a-btc"))
    return d


# -- transfers ---------------------------------------------------------------------------


def test_deposit_twice_with_one_ref_applies_once() -> None:
    d = Driver()
    first = d.run(Deposit("A", "USD", 500, "r1"))
    assert [type(e) for e in first] == [Transfer, Balance]
    assert isinstance(first[0], Transfer) and first[0].status == "applied"
    assert balances(first) == [("A", "USD", 500, 0)]
    again = d.run(Deposit("A", "USD", 500, "r1"))
    assert len(again) == 1 and isinstance(again[0], Transfer)
    assert again[0].status == "duplicate" and again[0].reason is None
    assert d.bal("A", "USD") == (500, 0)
    assert d.ledger.net_transfers == {"USD": 500}
    assert [e.seq for e in first + again] == [1, 2, 3]


def test_withdraw_too_much_is_rejected_and_changes_nothing() -> None:
    d = funded(usd=100)
    e = d.run(Withdraw("A", "USD", 101, "w1"))
    assert len(e) == 1 and isinstance(e[0], Transfer)
    assert (e[0].status, e[0].reason) == ("rejected", INSUFFICIENT_FUNDS)
    ok = d.run(Withdraw("A", "USD", 100, "w1"))  # a rejected ref was not applied
    assert isinstance(ok[0], Transfer) and ok[0].status == "applied"
    assert balances(ok) == [("A", "USD", 0, 0)]
    assert d.ledger.totals() == {"USD": 0}


def test_withdraw_cannot_take_what_is_held() -> None:
    d = funded(usd=1_002)
    d.to(Place("A", "buy", "limit", 10, 100))
    assert d.bal("A", "USD") == (0, 1_002)
    e = d.run(Withdraw("A", "USD", 1, "w"))
    assert isinstance(e[0], Transfer) and e[0].reason == INSUFFICIENT_FUNDS


@pytest.mark.parametrize("amount", [0, -5])
def test_transfer_of_nothing_is_a_bad_request(amount: int) -> None:
    d = Driver()
    e = d.run(Deposit("A", "USD", amount, "z"))
    assert isinstance(e[0], Transfer) and (e[0].status, e[0].reason) == ("rejected",
                                                                         "BAD_REQUEST")
    assert d.ledger.refs == set()


# -- places ------------------------------------------------------------------------------


def test_buy_limit_holds_notional_plus_taker_fee_rounded_up_and_is_forwarded() -> None:
    d = funded()
    e = d.to(Place("A", "buy", "limit", 3, 101, client_order_id="c1"))
    # 303 + ceil(303 * 0.002 = 0.606) = 304
    assert balances(e) == [("A", "USD", 10_000 - 304, 304)]
    [(symbol, fields)] = d.ledger.take_outbox()
    assert symbol == SYM and fields[0] == b"c"
    assert decode_command(fields[1]) == Place("A", "buy", "limit", 3, 101,
                                              client_order_id="c1")
    assert parse_forward_seq(fields[3]) == (0, 1)
    assert fields[5] == d.last_id.encode()
    assert d.ledger.take_outbox() == []


def test_sell_holds_base_and_market_buy_holds_its_budget() -> None:
    d = funded(btc=5)
    assert balances(d.to(Place("A", "sell", "limit", 2, 100))) == [("A", "BTC", 3, 2)]
    assert balances(d.to(Place("A", "sell", "market", 3))) == [("A", "BTC", 0, 5)]
    assert balances(d.to(Place("A", "buy", "market", 0, quote_qty=700))) == [
        ("A", "USD", 9_300, 700)]
    assert [parse_forward_seq(f[3]) for _, f in d.ledger.take_outbox()] == [
        (0, 1), (0, 2), (0, 3)]


def test_shard_k_ids_carry_the_shard() -> None:
    d = Driver(Ledger(3, MARKETS))
    d.run(Deposit("A", "USD", 10_000, "r"))
    d.to(Place("A", "buy", "limit", 1, 100))
    [(_, fields)] = d.ledger.take_outbox()
    assert fields[3] == b"3:1" and fields[5] == f"{d.last_id}-3".encode()
    assert list(d.ledger.orders) == [f"{d.last_id}-3"]


def test_order_that_does_not_fit_is_rejected_for_funds_and_not_forwarded() -> None:
    d = funded(usd=1_001)
    e = d.to(Place("A", "buy", "limit", 10, 100, client_order_id="x"))  # needs 1002
    assert len(e) == 1 and isinstance(e[0], MarketAnswer)
    r = e[0].event
    assert isinstance(r, Report)
    assert (r.exec_type, r.status, r.reason, r.order_id, r.client_order_id, r.seq) == (
        "rejected", "rejected", INSUFFICIENT_FUNDS, d.last_id, "x", e[0].seq)
    assert d.ledger.take_outbox() == [] and d.ledger.risk_seq == 0
    assert d.bal("A", "USD") == (1_001, 0)
    # Never funded at all: the same answer, and no balance row appears.
    e = d.to(Place("B", "sell", "limit", 1, 100))
    assert isinstance(e[0], MarketAnswer) and isinstance(e[0].event, Report)
    assert e[0].event.reason == INSUFFICIENT_FUNDS and "B" not in d.ledger.accounts


@pytest.mark.parametrize(("cmd", "symbol", "reason"), [
    (Place("A", "buy", "market", 1), SYM, "BAD_REQUEST"),
    (Place("A", "buy", "market", 1, quote_qty=100), SYM, "BAD_REQUEST"),
    (Place("A", "buy", "market", 0), SYM, "BAD_REQUEST"),
    (Place("A", "sell", "market", 1, quote_qty=100), SYM, "BAD_REQUEST"),
    (Place("A", "buy", "limit", 1, 100, quote_qty=100), SYM, "BAD_REQUEST"),
    (Place("A", "buy", "limit", 0, 100), SYM, "INVALID_QTY"),
    (Place("A", "sell", "limit", 1001, 100), SYM, "INVALID_QTY"),
    (Place("A", "buy", "limit", 1, 0), SYM, "INVALID_PRICE"),
    (Place("A", "buy", "limit", 1, 100), "XYZ-USD", "UNKNOWN_SYMBOL"),
])
def test_invalid_place_is_answered_not_forwarded(cmd: Place, symbol: str, reason: str) -> None:
    d = funded(btc=10)
    e = d.to(cmd, symbol)
    assert len(e) == 1 and isinstance(e[0], MarketAnswer) and e[0].symbol == symbol
    assert isinstance(e[0].event, Report) and e[0].event.reason == reason
    assert d.ledger.take_outbox() == [] and not d.ledger.orders


def test_place_built_with_a_wrong_literal_is_an_input_reject() -> None:
    d = funded()
    events: list[RiskEvent] = []
    d.ledger.apply("9-0", 9, ToMarket(SYM, Place("A", "Buy", "limit", 1, 100)),  # type: ignore[arg-type]
                   events)
    assert events == [InputRejected(d.ledger.seq, 9, "9-0", "BAD_REQUEST")]


def test_undecodable_entries_are_input_rejects() -> None:
    d = Driver()
    events: list[RiskEvent] = []
    d.ledger.apply_entries([[b"5-1", [b"c", b"\xc1"]], [b"6-0", [b"x", b"y"]],
                            [b"7-0", None]], events)
    assert events == [InputRejected(1, 5, "5-1", "BAD_REQUEST"),
                      InputRejected(2, 6, "6-0", "BAD_REQUEST"),
                      InputRejected(3, 7, "7-0", "BAD_REQUEST")]


def test_over_spending_accepts_what_fits_in_order() -> None:
    d = funded(usd=5_000)
    outcomes = []
    for price in (100, 200, 150, 100, 50, 100):  # holds 1002, 2004, 1503, 1002, 501, 1002
        e = d.to(Place("A", "buy", "limit", 10, price))
        outcomes.append("rejected" if isinstance(e[0], MarketAnswer) else "held")
    assert outcomes == ["held", "held", "held", "rejected", "rejected", "rejected"]
    assert d.bal("A", "USD") == (5_000 - 4_509, 4_509)
    assert len(d.ledger.take_outbox()) == 3


# -- settlement --------------------------------------------------------------------------


def test_fills_pay_fees_with_cumulative_rounding_to_the_fee_account() -> None:
    d = funded(btc=3)
    d.to(Place("A", "buy", "limit", 3, 101))
    buy = d.last_id
    d.run(Deposit("S", "BTC", 3, "s-btc"))
    d.to(Place("S", "sell", "limit", 3, 101))
    sell = d.last_id
    assert d.bal("A", "USD") == (10_000 - 304, 304)
    # Three fills of 1 at 101: the buyer takes (0.2 %), the seller makes (0.1 %).
    # Buyer fees: ceil(0.202)=1, ceil(0.404)-1=0, ceil(0.606)-1=0; seller: 1, 0, 0.
    fees = [(1, 1), (0, 0), (0, 0)]
    for n, (buyer_fee, seller_fee) in enumerate(fees, start=1):
        status = "filled" if n == 3 else "partially_filled"
        d.settle(report(sell, "trade", status, account="S", side="sell", price=101, qty=3,
                        cum_qty=n, last_qty=1, last_price=101, liquidity="maker",
                        fee=seller_fee),
                 report(buy, "trade", status, price=101, qty=3, cum_qty=n, last_qty=1,
                        last_price=101, liquidity="taker", fee=buyer_fee))
    assert d.bal("A", "USD") == (10_000 - 303 - 1, 0)
    assert d.bal("A", "BTC") == (6, 0)
    assert d.bal("S", "USD") == (303 - 1, 0)
    assert d.bal("S", "BTC") == (0, 0)
    assert d.bal("fees", "USD") == (2, 0)
    assert not d.ledger.orders
    assert d.ledger.totals() == {"USD": 10_000, "BTC": 6}


def test_buy_filled_at_a_better_price_releases_the_excess() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 10, 100))
    oid = d.last_id
    assert d.bal("A", "USD") == (8_998, 1_002)
    # 4 at 90 as taker: pays 360 + ceil(0.72) = 361; what 6 at 100 may still cost is
    # 600 + ceil(0.72 + 1.2) - ceil(0.72) = 601, so 1002 - 361 - 601 = 40 comes back.
    e = d.settle(report(oid, "trade", "partially_filled", cum_qty=4, last_qty=4,
                        last_price=90, liquidity="taker", fee=1))
    assert balances(e) == [("A", "BTC", 4, 0), ("A", "USD", 8_998 + 40, 601),
                           ("fees", "USD", 1, 0)]
    assert d.ledger.orders[oid].hold == 601
    # The rest fills at 100 as maker: 600 + ceil(0.72 + 0.6) - 1 = 601: nothing left.
    e = d.settle(report(oid, "trade", "filled", cum_qty=10, last_qty=6, last_price=100,
                        liquidity="maker", fee=1))
    assert balances(e) == [("A", "BTC", 10, 0), ("A", "USD", 9_038, 0),
                           ("fees", "USD", 2, 0)]
    assert d.bal("A", "USD")[0] == 10_000 - 360 - 600 - 2


def test_cancel_forwards_then_releases_on_the_market_answer() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 10, 100))
    oid = d.last_id
    d.ledger.take_outbox()
    assert balances(d.to(Cancel("A", oid))) == []
    [(_, fields)] = d.ledger.take_outbox()
    assert decode_command(fields[1]) == Cancel("A", oid)
    assert d.bal("A", "USD") == (8_998, 1_002)
    e = d.settle(report(oid, "canceled", "canceled"))
    assert balances(e) == [("A", "USD", 10_000, 0)]
    assert not d.ledger.orders
    assert d.ledger.positions == {SYM: "1-0"}


def test_cancel_all_is_forwarded_and_unknown_markets_answered() -> None:
    d = funded()
    d.to(CancelAll("A"))
    assert len(d.ledger.take_outbox()) == 1
    e = d.to(Cancel("A", "1-0"), "XYZ-USD")
    assert isinstance(e[0], MarketAnswer) and isinstance(e[0].event, CancelRejected)
    assert e[0].event.reason == "UNKNOWN_SYMBOL"
    assert d.to(CancelAll("A"), "XYZ-USD") == [] and d.ledger.take_outbox() == []


def test_market_buy_by_budget_releases_what_it_did_not_spend() -> None:
    d = funded()
    d.to(Place("A", "buy", "market", 0, quote_qty=1_000))
    oid = d.last_id
    # 5 at 100 as taker: 500 + ceil(1.0) = 501; then 4 at 110: 440 + ceil(1 + 0.88) - 1 = 441.
    d.settle(report(oid, "trade", "partially_filled", price=0, qty=5, cum_qty=5, last_qty=5,
                    last_price=100, liquidity="taker", fee=1, type_="market"))
    assert d.bal("A", "USD") == (9_000, 499)  # the budget is not trimmed while it runs
    e = d.settle(report(oid, "trade", "partially_filled", price=0, qty=9, cum_qty=9,
                        last_qty=4, last_price=110, liquidity="taker", fee=1, type_="market"),
                 report(oid, "expired", "expired", price=0, qty=9, cum_qty=9,
                        type_="market"))
    assert balances(e) == [("A", "BTC", 9, 0), ("A", "USD", 10_000 - 942, 0),
                           ("fees", "USD", 2, 0)]
    assert not d.ledger.orders


def test_market_rejection_releases_the_whole_hold() -> None:
    d = funded(btc=4)
    d.to(Place("A", "sell", "limit", 4, 100, post_only=True))
    oid = d.last_id
    e = d.settle(report(oid, "rejected", "rejected", side="sell", qty=4))
    assert balances(e) == [("A", "BTC", 4, 0)]


def test_reports_of_unknown_orders_and_replayed_out_entries_are_ignored() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 10, 100))
    oid = d.last_id
    assert d.settle(report("77-0", "canceled", "canceled")) == []
    settle = Settle(SYM, "9-0", [report(oid, "trade", "partially_filled", cum_qty=1,
                                        last_qty=1, last_price=100, liquidity="maker",
                                        fee=1)])
    assert balances(d.run(settle)) != []
    assert d.run(settle) == []  # the same :out entry again changes nothing
    assert d.run(Settle(SYM, "8-5", settle.events)) == []
    assert d.ledger.positions == {SYM: "9-0"}


# -- amends ------------------------------------------------------------------------------


def test_amend_up_holds_the_difference_and_amend_down_releases_after_the_answer() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 10, 100, client_order_id="c"))
    oid = d.last_id
    d.ledger.take_outbox()
    # Up: 20 at 100 -> 2000 + 4 = 2004 in all; 1002 more.
    e = d.to(Amend("A", client_order_id="c", qty=20))
    up = d.last_id
    assert balances(e) == [("A", "USD", 10_000 - 2_004, 2_004)]
    assert decode_command(d.ledger.take_outbox()[0][1][1]) == Amend("A", None, "c", 20)
    d.settle(report(oid, "replaced", "new", qty=20))
    assert d.bal("A", "USD") == (7_996, 2_004) and not d.ledger.amends
    # Down, to 5 at 90: nothing is released until the market answers.
    assert balances(d.to(Amend("A", oid, qty=5, price=90))) == []
    assert d.ledger.orders[oid].pending_amends == [d.last_id] != [up]
    e = d.settle(report(oid, "replaced", "new", qty=5, price=90))
    # 450 + ceil(0.9) = 451
    assert balances(e) == [("A", "USD", 10_000 - 451, 451)]


def test_amend_bound_covers_fills_at_the_old_price_before_it_applies() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 10, 100))
    oid = d.last_id
    # To 20 at 90: up to 10 may fill at 100 first, then the other 10 at 90:
    # 1000 + 900 + ceil(3.8) = 1904 -> 902 more than the 1002 held.
    assert balances(d.to(Amend("A", oid, qty=20, price=90))) == [("A", "USD", 8_096, 1_904)]
    # A second amend before the first is answered, price unchanged (whatever it is then):
    # to 25: 20 may fill at up to 100, 5 more at up to 100: 2500 + 5 = 2505.
    assert balances(d.to(Amend("A", oid, qty=25))) == [("A", "USD", 7_495, 2_505)]
    second = d.last_id
    # The market filled 9 at 100 (as maker: ceil(0.9) = 1), then applied the first amend.
    d.settle(report(oid, "trade", "partially_filled", qty=10, cum_qty=9, last_qty=9,
                    last_price=100, liquidity="maker", fee=1),
             report(oid, "replaced", "partially_filled", qty=20, price=90, cum_qty=9))
    o = d.ledger.orders[oid]
    assert o.hold == 2_505 - 901 and o.pending_amends == [second]
    assert (o.max_price, o.max_qty) == (100, 25)  # still covering the pending second amend
    e = d.settle(report(oid, "replaced", "partially_filled", qty=25, price=90, cum_qty=9))
    # 16 at 90 = 1440, fee ceil(0.9 + 2.88) - ceil(0.9) = 3 -> 1443 kept.
    assert balances(e) == [("A", "USD", 10_000 - 901 - 1_443, 1_443)]


def test_amend_that_does_not_fit_is_rejected_and_the_order_stays() -> None:
    d = funded(usd=1_500)
    d.to(Place("A", "buy", "limit", 10, 100))
    oid = d.last_id
    d.ledger.take_outbox()
    e = d.to(Amend("A", oid, qty=15))  # needs 1503: 501 more, 498 available
    assert len(e) == 1 and isinstance(e[0], MarketAnswer)
    assert e[0].event == CancelRejected(e[0].seq, d.ms, "A", oid, None, d.last_id,
                                        INSUFFICIENT_FUNDS)
    assert d.ledger.take_outbox() == []
    o = d.ledger.orders[oid]
    assert (o.hold, o.qty, o.pending_amends) == (1_002, 10, [])
    assert d.bal("A", "USD") == (498, 1_002)


def test_amend_rejected_by_the_market_gives_back_its_increase() -> None:
    d = funded()
    d.to(Place("A", "sell", "limit", 3, 100))  # no BTC: rejected for funds
    d.run(Deposit("A", "BTC", 10, "b"))
    d.to(Place("A", "sell", "limit", 3, 100))
    oid = d.last_id
    assert balances(d.to(Amend("A", oid, qty=8))) == [("A", "BTC", 2, 8)]
    e = d.settle(CancelRejected(0, 0, "A", oid, None, d.last_id, "INVALID_QTY"))
    assert balances(e) == [("A", "BTC", 7, 3)]
    assert not d.ledger.amends and d.ledger.orders[oid].pending_amends == []


def test_amend_of_an_order_the_ledger_does_not_hold_is_forwarded_unchanged() -> None:
    d = funded()
    assert d.to(Amend("A", "5-0", qty=3)) == []
    assert d.to(Amend("A", None, "nope", price=100)) == []
    assert len(d.ledger.take_outbox()) == 2 and not d.ledger.amends


def test_amend_by_a_shared_client_order_id_holds_for_every_candidate() -> None:
    d = funded()
    d.to(Place("A", "buy", "limit", 1, 100, client_order_id="c"))
    first = d.last_id
    d.to(Place("A", "buy", "limit", 1, 100, client_order_id="c"))  # the market will refuse it
    second = d.last_id
    e = d.to(Amend("A", None, "c", qty=2))  # 200 + 1 each: 100 more each
    assert balances(e) == [("A", "USD", 10_000 - 402, 402)]
    d.settle(report(second, "rejected", "rejected", qty=1))
    assert d.bal("A", "USD") == (10_000 - 201, 201)
    d.settle(report(first, "replaced", "new", qty=2))
    assert d.bal("A", "USD") == (10_000 - 201, 201) and not d.ledger.amends


# -- snapshot ----------------------------------------------------------------------------


def _busy(d: Driver) -> None:
    d.run(Deposit("A", "USD", 10_000, "a"))
    d.run(Deposit("B", "BTC", 50, "b"))
    d.to(Place("A", "buy", "limit", 10, 100, client_order_id="c"))
    d.to(Place("B", "sell", "limit", 5, 100))
    d.to(Amend("A", None, "c", qty=12, price=101))


def _after(d: Driver, buy: str, sell: str) -> list[RiskEvent]:
    events = []
    for cmd in (
        Settle(SYM, "3-0", [report(sell, "trade", "filled", account="B", side="sell", qty=5,
                                   cum_qty=5, last_qty=5, last_price=100, liquidity="maker",
                                   fee=1),
                            report(buy, "trade", "partially_filled", qty=10, cum_qty=5,
                                   last_qty=5, last_price=100, liquidity="taker", fee=1)]),
        Settle(SYM, "4-0", [report(buy, "replaced", "partially_filled", qty=12, price=101,
                                   cum_qty=5)]),
        ToMarket(SYM, Place("B", "sell", "market", 7)),
        Withdraw("A", "USD", 1_000, "w"),
        Deposit("A", "USD", 10_000, "a"),
    ):
        events += d.run(cmd)
    return events


def test_snapshot_round_trip_then_continue_gives_identical_events() -> None:
    straight = Driver()
    _busy(straight)
    buy, sell = list(straight.ledger.orders)
    snap = take_risk_snapshot(straight.ledger, straight.last_id, "2-0")
    data = encode_risk_snapshot(snap)
    assert msgspec.msgpack.decode(data) is not None
    restored_snap = decode_risk_snapshot(data)
    assert restored_snap == snap
    restored = Driver(restore_ledger(MARKETS, "fees", restored_snap), ms=straight.ms)
    restored.ledger._check()
    assert take_risk_snapshot(restored.ledger, straight.last_id, "2-0") == snap
    want = _after(straight, buy, sell)
    got = _after(restored, buy, sell)
    assert got == want
    assert restored.ledger.take_outbox() == straight.ledger.take_outbox()[-1:]
    assert take_risk_snapshot(restored.ledger) == take_risk_snapshot(straight.ledger)
    assert snap.net_transfers == {"BTC": 50, "USD": 10_000}
