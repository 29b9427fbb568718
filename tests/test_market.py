"""engine/market.py: exact decimal <-> tick/lot conversion and market validation."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.errors import INVALID_LOT, INVALID_PRICE, INVALID_QTY, INVALID_TICK, StreamexError
from contract.market import DEFAULT_MARKETS, Market, parse_decimal

BTC = DEFAULT_MARKETS[0]  # tick 0.01, lot 0.0001, qty [0.0001, 1000], price [0.01, 1000000]
NICKEL = Market("ABC-USD", "ABC", "USD", "0.05", "1", "1", "100", "0.05", "50")
WHOLE = Market("XYZ-JPY", "XYZ", "JPY", "1", "10", "10", "1000", "1", "9999")


def _code(fn: object, text: object) -> str:
    assert callable(fn)
    with pytest.raises(StreamexError) as info:
        fn(text)
    return info.value.code


def test_default_markets() -> None:
    assert [m.symbol for m in DEFAULT_MARKETS] == ["BTC-USD", "ETH-USD"]
    assert (BTC.min_lots, BTC.max_lots) == (1, 10_000_000)
    assert (BTC.min_ticks, BTC.max_ticks) == (1, 100_000_000)


def test_parse_and_format() -> None:
    assert BTC.parse_price("101.25") == 10125
    assert BTC.format_price(10125) == "101.25"
    assert BTC.parse_qty("0.5") == 5000
    assert BTC.format_qty(5000) == "0.5000"
    assert BTC.format_price(1) == "0.01"
    assert NICKEL.parse_price("1.05") == 21
    assert NICKEL.format_price(21) == "1.05"
    assert WHOLE.parse_qty("120") == 12
    assert WHOLE.format_qty(12) == "120"
    assert WHOLE.format_price(42) == "42"


@given(st.integers(min_value=BTC.min_ticks, max_value=BTC.max_ticks),
       st.integers(min_value=BTC.min_lots, max_value=BTC.max_lots))
def test_round_trip_btc(ticks: int, lots: int) -> None:
    assert BTC.parse_price(BTC.format_price(ticks)) == ticks
    assert BTC.parse_qty(BTC.format_qty(lots)) == lots


@given(st.integers(min_value=NICKEL.min_ticks, max_value=NICKEL.max_ticks))
def test_round_trip_non_decimal_tick(ticks: int) -> None:
    text = NICKEL.format_price(ticks)
    assert text.endswith(("0", "5"))
    assert NICKEL.parse_price(text) == ticks


def test_trailing_zeros_are_accepted() -> None:
    assert BTC.parse_price("100.5000000") == 10050
    assert BTC.parse_price("100.00") == 10000
    assert BTC.parse_price("100") == 10000
    assert BTC.parse_qty("1.00000000") == 10_000
    assert WHOLE.parse_qty("20.000") == 2


@pytest.mark.parametrize("text", ["0", "0.0000", "-1", "NaN", "1e9999", "abc", " 1", "1.", ".5",
                                  "", "+1", "1,5", "inf", "1 ", "0x10", "1" * 62])
def test_malformed_or_zero_is_invalid_qty_and_invalid_price(text: str) -> None:
    assert _code(BTC.parse_qty, text) == INVALID_QTY
    assert _code(BTC.parse_price, text) == INVALID_PRICE


@pytest.mark.parametrize("value", [1, 1.5, None, b"1", ["1"]])
def test_non_string_is_rejected(value: object) -> None:
    assert _code(BTC.parse_qty, value) == INVALID_QTY
    assert _code(BTC.parse_price, value) == INVALID_PRICE


def test_off_tick_and_off_lot() -> None:
    assert _code(BTC.parse_price, "100.005") == INVALID_TICK
    assert _code(BTC.parse_qty, "0.00015") == INVALID_LOT
    assert _code(NICKEL.parse_price, "1.03") == INVALID_TICK
    assert _code(WHOLE.parse_qty, "15") == INVALID_LOT
    with pytest.raises(StreamexError, match=r"price: must be a multiple of 0\.01"):
        BTC.parse_price("100.005")


def test_out_of_range() -> None:
    assert _code(BTC.parse_qty, "0.00001") == INVALID_QTY  # below min (and off-lot): range first
    assert _code(BTC.parse_qty, "1000.0001") == INVALID_QTY
    assert _code(BTC.parse_price, "0.001") == INVALID_PRICE
    assert _code(BTC.parse_price, "1000000.01") == INVALID_PRICE
    assert _code(WHOLE.parse_qty, "1") == INVALID_QTY
    assert BTC.parse_qty("1000") == BTC.max_lots
    assert BTC.parse_price("0.01") == BTC.min_ticks
    with pytest.raises(StreamexError, match=r"qty: must be within \[0\.0001, 1000\]"):
        BTC.parse_qty("5000")


def test_field_name_in_message() -> None:
    with pytest.raises(StreamexError, match="^stop_price: "):
        BTC.parse_price("abc", field_name="stop_price")


def test_parse_decimal() -> None:
    assert parse_decimal("1.2500") == (125, 2)
    assert parse_decimal("007") == (7, 0)
    with pytest.raises(ValueError):
        parse_decimal("1e3")


def test_avg_price() -> None:
    assert BTC.format_avg_price(0, 0) is None
    assert BTC.format_avg_price(10_000 * 5, 5) == "100.00"
    # 1 lot at 100.00 and 2 lots at 100.01: 100.00666... to tick decimals + 8, half-even.
    assert BTC.format_avg_price(10_000 * 1 + 10_001 * 2, 3) == "100.0066666667"
    assert BTC.format_avg_price(10_001 + 10_002, 2) == "100.015"
    # Exact halves at the last digit round to even.
    assert BTC.format_avg_price(1, 512) == "0.0000195312"
    assert BTC.format_avg_price(3, 512) == "0.0000585938"
    assert NICKEL.format_avg_price(21 * 3, 3) == "1.05"
    assert WHOLE.format_avg_price(42 * 7, 7) == "42"


def test_avg_price_whole_tick_keeps_fraction() -> None:
    # 1 lot at 1 and 1 lot at 2 on a market whose tick is 1: the average is 1.5, not 1.
    assert WHOLE.format_avg_price(1 + 2, 2) == "1.5"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbol": "btc-usd"}, "symbol: "),
        ({"symbol": "BTCUSD"}, "symbol: "),
        ({"tick_size": "0"}, "tick_size: must be positive"),
        ({"tick_size": "1e-2"}, "tick_size: not a plain decimal string"),
        ({"lot_size": "-1"}, "lot_size: not a plain decimal string"),
        ({"min_qty": "0.00005"}, "min_qty: must be a positive multiple of lot_size"),
        ({"max_qty": "abc"}, "max_qty: not a plain decimal string"),
        ({"min_price": "0"}, "min_price: must be a positive multiple of tick_size"),
        ({"max_price": "100.001"}, "max_price: must be a positive multiple of tick_size"),
        ({"min_qty": "2", "max_qty": "1"}, "min_qty: greater than max_qty"),
        ({"min_price": "2", "max_price": "1"}, "min_price: greater than max_price"),
    ],
)
def test_market_construction_names_the_field(changes: dict[str, str], message: str) -> None:
    fields = BTC.to_wire() | changes
    with pytest.raises(ValueError) as info:
        Market(**fields)
    assert str(info.value).startswith(message)


def test_to_wire_round_trips() -> None:
    for market in DEFAULT_MARKETS:
        assert Market(**market.to_wire()) == market


# -- fees and asset units (PROTOCOL.md section A) ---------------------------------------

FEE_MARKET = Market("BTC-USD", "BTC", "USD", "0.01", "0.0001", "0.0001", "1000", "0.01",
                    "1000000", maker_fee="0.001", taker_fee="0.0025")


def test_units_of_an_asset_follow_tick_and_lot() -> None:
    m = FEE_MARKET
    assert (m.base_units, m.quote_units, m.base_per_lot, m.quote_per_tick_lot) == (4, 6, 1, 1)
    assert m.notional(m.parse_price("60000.00"), m.parse_qty("0.5")) == 30_000_000_000
    assert m.format_quote(30_000_000_000) == "30000.000000"
    assert m.format_base(m.base_amount(m.parse_qty("0.5"))) == "0.5000"
    coarse = Market("ETH-USD", "ETH", "USD", "0.5", "0.01", "0.01", "10", "1", "9000",
                    base_decimals=8, quote_decimals=8)
    assert coarse.base_per_lot == 10**6  # 0.01 ETH in 1e-8 units
    assert coarse.quote_per_tick_lot == 5 * 1 * 10**5  # 0.5 x 0.01 = 0.005 USD in 1e-8 units
    assert Market(**coarse.to_wire()) == coarse


@pytest.mark.parametrize(("changes", "message"), [
    ({"maker_fee": "1"}, "maker_fee: must be below 1"),
    ({"taker_fee": "-0.1"}, "taker_fee: not a plain decimal"),
    ({"maker_fee": "0.002", "taker_fee": "0.001"}, "maker_fee: greater than taker_fee"),
    ({"quote_decimals": 5}, "quote_decimals: must be in 6..18"),
    ({"base_decimals": 3}, "base_decimals: must be in 4..18"),
])
def test_bad_fees_and_decimals_are_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        msgspec.structs.replace(FEE_MARKET, **changes)


def test_a_single_fill_pays_its_fee_rounded_up() -> None:
    m = FEE_MARKET
    assert m.fee(0, 1_000_000, maker=False) == (2500, 25_000_000)  # 1 USD x 25 bps
    assert m.fee(0, 1, maker=True)[0] == 1  # 0.001 of a unit: rounded up to one
    assert m.fee(0, 0, maker=True) == (0, 0)


@given(st.lists(st.tuples(st.integers(0, 10**12), st.booleans()), max_size=30))
def test_an_orders_fees_total_its_exact_fee_rounded_up_once(fills: list[tuple[int, bool]]
                                                            ) -> None:
    m = FEE_MARKET
    fee_num = paid = 0
    for notional, maker in fills:
        charged, fee_num = m.fee(fee_num, notional, maker)
        assert 0 <= charged <= notional  # a seller's proceeds never go negative
        paid += charged
    exact = sum(n * (m.maker_num if mk else m.taker_num) for n, mk in fills)
    assert paid == -(-exact // m.fee_den)  # ceil(exact total): at most one unit above it


@given(st.integers(1, 10**6), st.integers(1, 10**6),
       st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 1000), st.booleans()),
                max_size=20))
def test_a_buys_hold_covers_whatever_its_fills_cost(limit: int, lots: int,
                                                    fills: list[tuple[int, int, bool]]) -> None:
    """Fills at or below the limit, of at most the order's lots, maker or taker."""
    m = FEE_MARKET
    hold = m.buy_hold(limit, lots)
    spent = fee_num = 0
    left = lots
    for price, qty, maker in fills:
        qty = min(qty, left)
        if qty == 0:
            break
        notional = m.notional(min(price, limit), qty)
        fee, fee_num = m.fee(fee_num, notional, maker)
        spent += notional + fee
        left -= qty
    assert spent <= hold


def test_parse_units_is_exact_and_refuses_finer_amounts() -> None:
    from contract.market import format_units, parse_units

    assert parse_units("1.5", 4) == 15_000 and parse_units("100000", 6) == 100_000_000_000
    assert parse_units("0.000001", 6) == 1 and parse_units("1.2300", 2) == 123
    for bad in ("1.00001", "-1", "1e3", "", " 1", "NaN"):
        with pytest.raises(ValueError):
            parse_units(bad, 4)
    assert parse_units(format_units(123_456_789, 6), 6) == 123_456_789
