"""The gateway's request decoder and validator (sans-I/O): every bad input gets its code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.commands import MARKET_TYPES, STOP_TYPES, Amend, Cancel, CancelAll, Place
from contract.errors import (
    BAD_REQUEST,
    ERROR_CODES,
    INVALID_EXPIRE_TIME,
    INVALID_LOT,
    INVALID_PRICE,
    INVALID_QTY,
    INVALID_STOP_PRICE,
    INVALID_TICK,
    UNKNOWN_METHOD,
    UNKNOWN_ORDER,
    UNKNOWN_SYMBOL,
    StreamexError,
)
from contract.market import DEFAULT_MARKETS
from contract.wire import RequestError
from gateway.validation import METHODS, ORDER_METHODS, commands_for, decode_request

MARKETS = {m.symbol: m for m in DEFAULT_MARKETS}
BTC = MARKETS["BTC-USD"]


def frame(method: str, params: Any = None, request_id: Any = 1) -> str:
    message: dict[str, Any] = {"id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def place(**overrides: Any) -> str:
    params = {"symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "0.5",
              "price": "100.25"}
    params.update(overrides)
    return frame("order.place", {k: v for k, v in params.items() if v is not ...})


def commands(text: str, account: str = "alice") -> list[tuple[str, Any]]:
    return commands_for(decode_request(text).params, MARKETS, account)


def refusal(text: str | bytes) -> StreamexError:
    """The error a frame gets from decoding plus validation (as the session runs them)."""
    with pytest.raises(StreamexError) as caught:
        request = decode_request(text)
        if request.method in ORDER_METHODS:
            commands_for(request.params, MARKETS, "alice")
    return caught.value


# -- well-formed requests ---------------------------------------------------------------


def test_limit_place_becomes_ticks_and_lots() -> None:
    [(symbol, cmd)] = commands(place(client_order_id="my-order_1", stp="cancel_both"))
    assert symbol == "BTC-USD"
    assert cmd == Place("alice", "buy", "limit", 5000, 10025, "GTC", False, "my-order_1",
                        "cancel_both")


def test_market_place_defaults_to_ioc_and_keeps_fok() -> None:
    [(_, cmd)] = commands(place(type="market", price=...))
    assert cmd == Place("alice", "buy", "market", 5000, 0, "IOC")
    [(_, cmd)] = commands(place(type="market", price=..., tif="FOK"))
    assert cmd.tif == "FOK"


def test_cancel_amend_cancel_all_commands() -> None:
    assert commands(frame("order.cancel", {"symbol": "BTC-USD", "order_id": "17-3"})) == [
        ("BTC-USD", Cancel("alice", "17-3", None))]
    assert commands(frame("order.cancel", {"symbol": "ETH-USD", "client_order_id": "x"})) == [
        ("ETH-USD", Cancel("alice", None, "x"))]
    assert commands(frame("order.amend", {"symbol": "BTC-USD", "client_order_id": "x",
                                          "qty": "2", "price": "99"})) == [
        ("BTC-USD", Amend("alice", None, "x", 20000, 9900))]
    assert commands(frame("order.cancel_all", {"symbol": "BTC-USD"})) == [
        ("BTC-USD", CancelAll("alice"))]
    assert commands(frame("order.cancel_all")) == [
        ("BTC-USD", CancelAll("alice")), ("ETH-USD", CancelAll("alice"))]


@pytest.mark.parametrize("coid", ["a", "x" * 36, "A-z_0-9", "-", "_" * 36])
def test_client_order_ids_of_1_to_36_allowed_characters_are_accepted(coid: str) -> None:
    [(_, cmd)] = commands(place(client_order_id=coid))
    assert cmd.client_order_id == coid
    [(_, cancel)] = commands(frame("order.cancel", {"symbol": "BTC-USD", "client_order_id": coid}))
    assert cancel.client_order_id == coid


@pytest.mark.parametrize("request_id", [0, -5, 2**63 - 1, "", "abc", "x" * 64])
def test_request_ids_int_or_string_are_kept(request_id: Any) -> None:
    assert decode_request(frame("ping", request_id=request_id)).id == request_id


# -- refusals -----------------------------------------------------------------------------

BAD_FRAMES: list[tuple[str | bytes, str, Any, str]] = [
    # (frame, code, echoed id, fragment of the message)
    ("not json", BAD_REQUEST, None, "not valid JSON"),
    ("", BAD_REQUEST, None, "not valid JSON"),
    ("[1, 2]", BAD_REQUEST, None, "JSON object"),
    ("42", BAD_REQUEST, None, "JSON object"),
    ('"ping"', BAD_REQUEST, None, "JSON object"),
    ("null", BAD_REQUEST, None, "JSON object"),
    (b'{"id": 1, "method": "ping"}', BAD_REQUEST, None, "binary"),
    ('{"id": 1}', BAD_REQUEST, 1, "method: required"),
    ('{"method": "ping"}', BAD_REQUEST, None, "id: required"),
    ('{"id": 1, "method": 5}', BAD_REQUEST, 1, "method"),
    ('{"id": true, "method": "ping"}', BAD_REQUEST, None, "id"),
    ('{"id": 1.5, "method": "ping"}', BAD_REQUEST, None, "id"),
    ('{"id": null, "method": "ping"}', BAD_REQUEST, None, "id"),
    ('{"id": [1], "method": "ping"}', BAD_REQUEST, None, "id"),
    ('{"id": {"a": 1}, "method": "ping"}', BAD_REQUEST, None, "id"),
    (frame("ping", request_id=2**63), BAD_REQUEST, None, "id"),
    (frame("ping", request_id=10**400), BAD_REQUEST, None, "id"),
    (frame("ping", request_id="x" * 65), BAD_REQUEST, None, "id"),
    ('{"id": 7, "method": "ping", "extra": 1}', BAD_REQUEST, 7, "extra: unknown field"),
    (frame("ping", []), BAD_REQUEST, 1, "params"),
    ('{"id": 1, "method": "ping", "params": null}', BAD_REQUEST, 1, "params"),
    (frame("ping", {"x": 1}), BAD_REQUEST, 1, "params.x: unknown field"),
    (frame("order.nope", {}), UNKNOWN_METHOD, 1, "order.nope"),
    (frame("x" * 65), BAD_REQUEST, 1, "method"),
    ("[" * 50_000 + "]" * 50_000, BAD_REQUEST, None, "request"),
    ('{"id": 3, "method": "ping", "params": ' + "[" * 50_000 + "]" * 50_000 + "}",
     BAD_REQUEST, None, "nested too deeply"),
    ('{"id": 1, "method": "ping"', BAD_REQUEST, None, "not valid JSON"),
    ('{"id": 1, "method": "ping"} trailing', BAD_REQUEST, None, "not valid JSON"),
    ('{"id": "\\ud800", "method": "ping"}', BAD_REQUEST, None, "not valid JSON"),
    ("\x00\x01\x02", BAD_REQUEST, None, "not valid JSON"),
    ("\u202e\ufeff{}", BAD_REQUEST, None, "not valid JSON"),
    # place
    (place(qty=1), BAD_REQUEST, 1, "params.qty: expected `str`, got `int`"),
    (place(qty=1.5), BAD_REQUEST, 1, "params.qty"),
    (place(qty=None), BAD_REQUEST, 1, "params.qty"),
    (place(qty=...), BAD_REQUEST, 1, "params.qty: required"),
    (place(qty="1" * 65), INVALID_QTY, 1, "params.qty"),
    (place(price="1" * 10_000), INVALID_PRICE, 1, "params.price"),
    (place(price=100), BAD_REQUEST, 1, "params.price"),
    (place(side="BUY"), BAD_REQUEST, 1, "params.side"),
    (place(side=...), BAD_REQUEST, 1, "params.side: required"),
    (place(type="stop"), BAD_REQUEST, 1, "params.type"),
    (place(tif="GTX"), BAD_REQUEST, 1, "params.tif"),
    (place(tif="gtd"), BAD_REQUEST, 1, "params.tif"),
    (place(stp="maybe"), BAD_REQUEST, 1, "params.stp"),
    (place(post_only="yes"), BAD_REQUEST, 1, "params.post_only"),
    (place(symbol=7), BAD_REQUEST, 1, "params.symbol"),
    (place(foo="bar"), BAD_REQUEST, 1, "params.foo: unknown field"),
    (place(client_order_id="has space"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id=""), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="x" * 37), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="ünïcode"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id=5), BAD_REQUEST, 1, "params.client_order_id"),
    # `$` would match before a final newline: the id must be the whole string.
    (place(client_order_id="abc\n"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="x" * 36 + "\n"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="abc\r\n"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="\nabc"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(client_order_id="ab\nc"), BAD_REQUEST, 1, "params.client_order_id"),
    (place(price=...), BAD_REQUEST, 1, "params.price: required for a limit order"),
    (place(price=None), BAD_REQUEST, 1, "params.price: required for a limit order"),
    (place(type="market"), BAD_REQUEST, 1, "params.price: not allowed for a market order"),
    (place(type="market", price=..., post_only=True), BAD_REQUEST, 1, "params.post_only"),
    (place(post_only=True, tif="IOC"), BAD_REQUEST, 1, "params.post_only"),
    (place(post_only=True, tif="FOK"), BAD_REQUEST, 1, "params.post_only"),
    (place(symbol="DOGE-USD"), UNKNOWN_SYMBOL, 1, "params.symbol"),
    (place(symbol="btc-usd"), UNKNOWN_SYMBOL, 1, "params.symbol"),
    (place(symbol="B" * 64), UNKNOWN_SYMBOL, 1, "params.symbol"),
    (place(symbol="B" * 10_000), UNKNOWN_SYMBOL, 1, "params.symbol"),
    (place(qty="0"), INVALID_QTY, 1, "params.qty"),
    (place(qty="0.0000"), INVALID_QTY, 1, "params.qty"),
    (place(qty="-1"), INVALID_QTY, 1, "params.qty"),
    (place(qty="NaN"), INVALID_QTY, 1, "params.qty"),
    (place(qty="Infinity"), INVALID_QTY, 1, "params.qty"),
    (place(qty="1e9999"), INVALID_QTY, 1, "params.qty"),
    (place(qty="1e2"), INVALID_QTY, 1, "params.qty"),
    (place(qty="abc"), INVALID_QTY, 1, "params.qty"),
    (place(qty=" 1"), INVALID_QTY, 1, "params.qty"),
    (place(qty="1."), INVALID_QTY, 1, "params.qty"),
    (place(qty=".5"), INVALID_QTY, 1, "params.qty"),
    (place(qty="+1"), INVALID_QTY, 1, "params.qty"),
    (place(qty="１"), INVALID_QTY, 1, "params.qty"),
    (place(qty=""), INVALID_QTY, 1, "params.qty"),
    (place(qty="1001"), INVALID_QTY, 1, "params.qty"),
    (place(qty="0.00001"), INVALID_QTY, 1, "params.qty"),
    (place(qty="9" * 40), INVALID_QTY, 1, "params.qty"),
    (place(qty="0.00015"), INVALID_LOT, 1, "params.qty: must be a multiple of 0.0001"),
    (place(price="0"), INVALID_PRICE, 1, "params.price"),
    (place(price="-100"), INVALID_PRICE, 1, "params.price"),
    (place(price="NaN"), INVALID_PRICE, 1, "params.price"),
    (place(price="1e9999"), INVALID_PRICE, 1, "params.price"),
    (place(price="1000000.01"), INVALID_PRICE, 1, "params.price"),
    (place(price="100.255"), INVALID_TICK, 1, "params.price: must be a multiple of 0.01"),
    # cancel / amend
    (frame("order.cancel", {"symbol": "BTC-USD"}), BAD_REQUEST, 1, "exactly one"),
    (frame("order.cancel", {"symbol": "BTC-USD", "order_id": "1-0", "client_order_id": "a"}),
     BAD_REQUEST, 1, "exactly one"),
    (frame("order.cancel", {"symbol": "BTC-USD", "order_id": 5}), BAD_REQUEST, 1,
     "params.order_id"),
    (frame("order.cancel", {"symbol": "BTC-USD", "order_id": "abc"}), UNKNOWN_ORDER, 1,
     "params.order_id"),
    (frame("order.cancel", {"symbol": "BTC-USD", "order_id": "1-2-3"}), UNKNOWN_ORDER, 1,
     "params.order_id"),
    (frame("order.cancel", {"symbol": "BTC-USD", "order_id": "1" * 30 + "-0"}), UNKNOWN_ORDER,
     1, "params.order_id"),
    (frame("order.cancel", {"symbol": "BTC-USD", "client_order_id": "a b"}), BAD_REQUEST, 1,
     "params.client_order_id"),
    (frame("order.cancel", {"symbol": "BTC-USD", "client_order_id": "abc\n"}), BAD_REQUEST, 1,
     "params.client_order_id"),
    (frame("order.amend", {"symbol": "BTC-USD", "client_order_id": "x" * 36 + "\n",
                           "qty": "1"}), BAD_REQUEST, 1, "params.client_order_id"),
    (frame("order.cancel", {"order_id": "1-0"}), BAD_REQUEST, 1, "params.symbol: required"),
    (frame("order.cancel", {"symbol": "XRP-USD", "order_id": "1-0"}), UNKNOWN_SYMBOL, 1,
     "params.symbol"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0"}), BAD_REQUEST, 1,
     "qty, price, stop_price"),
    (frame("order.amend", {"symbol": "BTC-USD", "qty": "1"}), BAD_REQUEST, 1, "exactly one"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "qty": "0"}), INVALID_QTY,
     1, "params.qty"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "qty": "0.00011"}),
     INVALID_LOT, 1, "params.qty"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "price": "-1"}),
     INVALID_PRICE, 1, "params.price"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "price": "1.001"}),
     INVALID_TICK, 1, "params.price"),
    (frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", "qty": 2}), BAD_REQUEST,
     1, "params.qty"),
    (frame("order.cancel_all", {"symbol": "NOPE-USD"}), UNKNOWN_SYMBOL, 1, "params.symbol"),
    (frame("order.cancel_all", {"symbol": 1}), BAD_REQUEST, 1, "params.symbol"),
    (frame("orders.open", {"all": True}), BAD_REQUEST, 1, "params.all: unknown field"),
    # logon
    (frame("logon", {"api_key": "k", "timestamp": "1", "signature": "s"}), BAD_REQUEST, 1,
     "params.timestamp"),
    (frame("logon", {"api_key": "k", "timestamp": 10**30, "signature": "s"}), BAD_REQUEST, 1,
     "params.timestamp"),
    (frame("logon", {"api_key": "k", "signature": "s"}), BAD_REQUEST, 1,
     "params.timestamp: required"),
    (frame("logon", {"api_key": "k", "timestamp": 1, "signature": "s",
                     "cancel_on_disconnect": 1}), BAD_REQUEST, 1,
     "params.cancel_on_disconnect"),
]


@pytest.mark.parametrize(("text", "code", "request_id", "fragment"), BAD_FRAMES)
def test_bad_frames_get_their_code_and_a_message_naming_the_field(
        text: str | bytes, code: str, request_id: Any, fragment: str) -> None:
    error = refusal(text)
    assert error.code == code, error.message
    assert fragment in error.message
    if isinstance(error, RequestError):
        assert error.request_id == request_id
    else:
        assert request_id == decode_request(text).id
    assert len(error.message) < 300


def test_every_method_is_listed() -> None:
    assert set(METHODS) == {"ping", "markets", "logon", "order.place", "order.cancel",
                            "order.amend", "order.cancel_all", "orders.open"}


# -- section B: stops, take-profits, GTD, icebergs ----------------------------------------

NOW = 1_700_000_000_000
"""The gateway's clock in these tests (ms): a GTD order must expire after it."""
LATER = NOW + 60_000


def placed(risk: bool = False, **overrides: Any) -> Place:
    """The command of a place that must be accepted (at the gateway clock NOW)."""
    request = decode_request(place(**overrides))
    [(_, cmd)] = commands_for(request.params, MARKETS, "alice", risk=risk, now_ms=NOW)
    assert isinstance(cmd, Place)
    return cmd


def refused(text: str, risk: bool = False) -> StreamexError:
    """The error an order-entry frame gets at the gateway clock NOW."""
    with pytest.raises(StreamexError) as caught:
        commands_for(decode_request(text).params, MARKETS, "alice", risk=risk, now_ms=NOW)
    return caught.value


def test_stop_and_take_profit_limits_carry_price_and_stop_price_in_ticks() -> None:
    for order_type in ("stop_limit", "take_profit_limit"):
        cmd = placed(type=order_type, side="sell", price="99.50", stop_price="100.00",
                     client_order_id="sl-1")
        assert cmd == Place("alice", "sell", order_type, 5000, 9950,
                            "GTC", client_order_id="sl-1", stop_price=10000)
        assert placed(type=order_type, stop_price="101.01", tif="IOC").tif == "IOC"


@pytest.mark.parametrize("risk", [False, True])
def test_stop_and_take_profit_markets_carry_qty_or_a_buys_quote_qty(risk: bool) -> None:
    for order_type in ("stop_market", "take_profit_market"):
        sell = placed(risk, type=order_type, side="sell", price=..., stop_price="95.00")
        assert sell == Place("alice", "sell", order_type, 5000, 0,
                             "IOC", stop_price=9500)
        if risk:  # a buy spends a budget when it triggers, as a market buy does
            buy = placed(risk, type=order_type, price=..., qty=..., quote_qty="250.5",
                         stop_price="105.00")
            assert (buy.qty, buy.quote_qty, buy.stop_price, buy.tif) == (
                0, 250_500_000, 10500, "IOC")
        else:
            buy = placed(risk, type=order_type, price=..., stop_price="105.00", tif="FOK")
            assert (buy.qty, buy.quote_qty, buy.tif) == (5000, 0, "FOK")
        # A stop market's GTD bounds its untriggered life.
        gtd = placed(risk, type=order_type, side="sell", price=..., stop_price="95.00",
                     tif="GTD", expire_time=LATER)
        assert (gtd.tif, gtd.expire_time) == ("GTD", LATER)


def test_gtd_limit_orders_and_icebergs() -> None:
    gtd = placed(tif="GTD", expire_time=NOW + 1)
    assert (gtd.tif, gtd.expire_time, gtd.display_qty) == ("GTD", NOW + 1, 0)
    iceberg = placed(qty="2", display_qty="0.25")
    assert (iceberg.qty, iceberg.display_qty, iceberg.tif) == (20000, 2500, "GTC")
    assert placed(qty="2", display_qty="2").display_qty == 20000  # at most qty: all shown
    both = placed(type="stop_limit", stop_price="100.00", tif="GTD", expire_time=LATER,
                  display_qty="0.1", post_only=False)
    assert (both.stop_price, both.expire_time, both.display_qty) == (10000, LATER, 1000)
    assert placed(tif="GTD", expire_time=LATER, post_only=True).post_only  # GTD rests too
    plain = placed()
    assert (plain.stop_price, plain.expire_time, plain.display_qty) == (0, 0, 0)


def test_amend_changes_a_stop_price_in_ticks() -> None:
    assert commands(frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0",
                                          "stop_price": "98.75"})) == [
        ("BTC-USD", Amend("alice", "1-0", None, None, None, 9875))]
    assert commands(frame("order.amend", {"symbol": "BTC-USD", "client_order_id": "s",
                                          "price": "98", "stop_price": "99"})) == [
        ("BTC-USD", Amend("alice", None, "s", None, 9800, 9900))]


def _amend(**params: Any) -> str:
    return frame("order.amend", {"symbol": "BTC-USD", "order_id": "1-0", **params})


SECTION_B_REFUSALS: list[tuple[str, bool, str, str]] = [
    # (frame, risk, code, fragment of the message)
    # stop_price: required by the stop types, refused on the others
    (place(type="stop_limit"), False, INVALID_STOP_PRICE, "params.stop_price: required"),
    (place(type="take_profit_market", price=...), False, INVALID_STOP_PRICE,
     "params.stop_price: required"),
    *[(place(type="stop_limit", stop_price=bad), False, INVALID_STOP_PRICE,
       "params.stop_price") for bad in ("abc", "0", "-1", "1e3", "NaN", "", " 100",
                                         "1000000.01", "0.001", "100.255", "1" * 70)],
    (place(type="stop_limit", stop_price=100), False, BAD_REQUEST,
     "params.stop_price: expected `str`"),
    (place(stop_price="100.00"), False, BAD_REQUEST, "params.stop_price: not allowed for a "
     "limit order"),
    (place(type="market", price=..., stop_price="100.00"), False, BAD_REQUEST,
     "params.stop_price: not allowed for a market order"),
    # price: a *_limit needs one, a *_market must not have one
    (place(type="stop_limit", price=..., stop_price="100"), False, BAD_REQUEST,
     "params.price: required for a stop_limit order"),
    (place(type="take_profit_limit", price=None, stop_price="100"), False, BAD_REQUEST,
     "params.price: required for a take_profit_limit order"),
    (place(type="stop_market", stop_price="100"), False, BAD_REQUEST,
     "params.price: not allowed for a stop_market order"),
    (place(type="take_profit_market", stop_price="100"), False, BAD_REQUEST,
     "params.price: not allowed for a take_profit_market order"),
    # post_only: never on a stop
    (place(type="stop_limit", stop_price="100", post_only=True), False, BAD_REQUEST,
     "params.post_only: not allowed for a stop_limit order"),
    (place(type="take_profit_market", price=..., stop_price="100", post_only=True), False,
     BAD_REQUEST, "params.post_only"),
    # GTD and expire_time
    (place(tif="GTD"), False, INVALID_EXPIRE_TIME, "params.expire_time: required with tif GTD"),
    (place(tif="GTD", expire_time=NOW), False, INVALID_EXPIRE_TIME,
     f"params.expire_time: {NOW} is not later than the gateway's clock"),
    (place(tif="GTD", expire_time=NOW - 1), False, INVALID_EXPIRE_TIME, "params.expire_time"),
    (place(tif="GTD", expire_time=0), False, INVALID_EXPIRE_TIME, "params.expire_time"),
    (place(tif="GTD", expire_time=-5), False, INVALID_EXPIRE_TIME, "params.expire_time"),
    (place(expire_time=LATER), False, INVALID_EXPIRE_TIME,
     "params.expire_time: only with tif GTD (tif is GTC)"),
    (place(tif="IOC", expire_time=LATER), False, INVALID_EXPIRE_TIME, "only with tif GTD"),
    (place(type="stop_market", price=..., stop_price="100", expire_time=LATER), False,
     INVALID_EXPIRE_TIME, "only with tif GTD"),
    (place(tif="GTD", expire_time=str(LATER)), False, BAD_REQUEST,
     "params.expire_time: expected `int`"),
    (place(tif="GTD", expire_time=1.5e12), False, BAD_REQUEST, "params.expire_time"),
    (place(tif="GTD", expire_time=2**63), False, BAD_REQUEST, "params.expire_time"),
    (place(tif="GTD", expire_time=None), False, BAD_REQUEST, "params.expire_time"),
    (place(type="market", price=..., tif="GTD", expire_time=LATER), False, BAD_REQUEST,
     "params.tif: GTD is not allowed for a market order"),
    (place(tif="GTD", price=..., expire_time=NOW), False, BAD_REQUEST,
     "params.price: required"),  # what the request lacks is said before a value's fault
    # display_qty: a plain positive lot multiple of at most qty, on orders that can rest
    *[(place(display_qty=bad), False, INVALID_QTY, "params.display_qty")
      for bad in ("0", "-0.1", "abc", "1e-1", "", "0.6", "1001")],
    (place(display_qty="0.00015"), False, INVALID_LOT,
     "params.display_qty: must be a multiple of 0.0001"),
    (place(qty="1", display_qty="1.0001"), False, INVALID_QTY,
     "params.display_qty: must not exceed qty"),
    (place(display_qty=1), False, BAD_REQUEST, "params.display_qty: expected `str`"),
    (place(type="market", price=..., display_qty="0.1"), False, BAD_REQUEST,
     "params.display_qty: only for"),
    (place(tif="IOC", display_qty="0.1"), False, BAD_REQUEST, "params.display_qty"),
    (place(tif="FOK", display_qty="0.1"), False, BAD_REQUEST, "params.display_qty"),
    (place(type="stop_market", price=..., stop_price="100", display_qty="0.1"), False,
     BAD_REQUEST, "params.display_qty"),
    (place(type="stop_limit", stop_price="100", tif="IOC", display_qty="0.1"), False,
     BAD_REQUEST, "params.display_qty"),
    # under the risk stage a stop/take-profit market buy spends quote_qty; a sell has qty
    (place(type="stop_market", price=..., stop_price="100"), True, BAD_REQUEST,
     "params.qty: not allowed for a stop_market buy"),
    (place(type="take_profit_market", price=..., qty=..., stop_price="100"), True,
     BAD_REQUEST, "params.quote_qty: required for a take_profit_market buy"),
    (place(type="stop_market", side="sell", price=..., stop_price="100", quote_qty="10"),
     True, BAD_REQUEST, "params.quote_qty: only for"),
    (place(type="stop_limit", stop_price="100", quote_qty="10"), True, BAD_REQUEST,
     "params.quote_qty"),
    (place(type="stop_market", price=..., qty=..., stop_price="100", quote_qty="10",
           tif="FOK"), True, BAD_REQUEST, "params.tif: FOK is not allowed"),
    (place(type="stop_market", price=..., qty=..., stop_price="100", quote_qty="0"), True,
     INVALID_QTY, "params.quote_qty"),
    (place(type="stop_market", price=..., qty=..., stop_price="100", quote_qty="10"), False,
     BAD_REQUEST, "params.quote_qty: needs the risk stage"),
    # amend's stop_price
    *[(_amend(stop_price=bad), False, INVALID_STOP_PRICE, "params.stop_price")
      for bad in ("abc", "0", "-1", "100.255", "1000000.01", "")],
    (_amend(stop_price=100), False, BAD_REQUEST, "params.stop_price: expected `str | null`"),
    (_amend(expire_time=LATER), False, BAD_REQUEST, "params.expire_time: unknown field"),
]


@pytest.mark.parametrize(("text", "risk", "code", "fragment"), SECTION_B_REFUSALS)
def test_section_b_refusals_get_their_code_and_name_the_field(
        text: str, risk: bool, code: str, fragment: str) -> None:
    error = refused(text, risk)
    assert (error.code, fragment in error.message) == (code, True), error.message
    assert len(error.message) < 300


def test_every_error_code_of_section_b_is_documented() -> None:
    assert {INVALID_STOP_PRICE, INVALID_EXPIRE_TIME} <= ERROR_CODES


# -- fuzz: nothing but documented codes escapes ----------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)
field_values = (json_values | st.sampled_from(
    ["BTC-USD", "ETH-USD", "buy", "sell", "limit", "market", "stop_limit", "stop_market",
     "take_profit_limit", "take_profit_market", "GTC", "IOC", "FOK", "GTD", "0", "-1",
     "1", "0.5", "100.25", "1e9999", "NaN", "0.00001", "1-0", "abc", "cancel_both", "", "x" * 40,
     4_102_444_800_000, 0])
    | st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,6})?", fullmatch=True))
param_names = st.sampled_from(["symbol", "side", "type", "qty", "price", "tif", "post_only",
                               "client_order_id", "stp", "order_id", "api_key", "timestamp",
                               "signature", "cancel_on_disconnect", "stop_price",
                               "expire_time", "display_qty", "bogus"])
requests = st.fixed_dictionaries(
    {"method": st.sampled_from([*METHODS, "nope", 3]) | st.text(max_size=10),
     "params": st.dictionaries(param_names, field_values, max_size=9) | json_values},
    optional={"id": st.integers() | st.text(max_size=70) | json_values,
              "junk": json_values})
frames = (requests.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=200)
          | st.binary(max_size=200))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_random_frames_only_raise_documented_codes(text: str | bytes) -> None:
    try:
        request = decode_request(text)
        if request.method in ORDER_METHODS:
            for symbol, cmd in commands_for(request.params, MARKETS, "alice"):
                assert symbol in MARKETS
                if isinstance(cmd, Place):
                    market = MARKETS[symbol]
                    assert market.min_lots <= cmd.qty <= market.max_lots
                    assert cmd.type in MARKET_TYPES or market.min_ticks <= cmd.price
                    assert (cmd.stop_price > 0) == (cmd.type in STOP_TYPES)
                    assert (cmd.expire_time > 0) == (cmd.tif == "GTD")
                    assert 0 <= cmd.display_qty <= cmd.qty
    except StreamexError as exc:
        assert exc.code in ERROR_CODES
        assert exc.message
        if isinstance(exc, RequestError):
            assert exc.request_id is None or type(exc.request_id) in (int, str)
