"""The gateway's request decoder and validator (sans-I/O): every bad input gets its code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.commands import Amend, Cancel, CancelAll, Place
from contract.errors import (
    BAD_REQUEST,
    ERROR_CODES,
    INVALID_LOT,
    INVALID_PRICE,
    INVALID_QTY,
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
    (place(tif="GTD"), BAD_REQUEST, 1, "params.tif"),
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
     "qty, price"),
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


# -- fuzz: nothing but documented codes escapes ----------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)
field_values = (json_values | st.sampled_from(
    ["BTC-USD", "ETH-USD", "buy", "sell", "limit", "market", "GTC", "IOC", "FOK", "0", "-1",
     "1", "0.5", "100.25", "1e9999", "NaN", "0.00001", "1-0", "abc", "cancel_both", "", "x" * 40])
    | st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,6})?", fullmatch=True))
param_names = st.sampled_from(["symbol", "side", "type", "qty", "price", "tif", "post_only",
                               "client_order_id", "stp", "order_id", "api_key", "timestamp",
                               "signature", "cancel_on_disconnect", "bogus"])
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
                    assert cmd.type == "market" or market.min_ticks <= cmd.price
    except StreamexError as exc:
        assert exc.code in ERROR_CODES
        assert exc.message
        if isinstance(exc, RequestError):
            assert exc.request_id is None or type(exc.request_id) in (int, str)
