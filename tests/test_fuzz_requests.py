"""Hypothesis fuzzing of both services' request decoders: nothing but documented codes.

Random JSON *text* (written here, so it can hold what ``json.dumps`` cannot:
duplicate keys, nesting thousands deep, numbers beyond int64 and float,
strings up to the frame limit, escapes of lone surrogates, invalid tokens),
random text and random bytes go

(a) to the pure decoders (``gateway.validation.decode_request`` plus
    ``commands_for``; ``marketdata.requests.parse_request``): each frame is
    accepted or refused with a ``StreamexError`` (``RequestError``) whose code
    is in ``contract.errors.ERROR_CODES``; any other exception fails;

(b) over one real websocket to a running gateway (real Redis, logged on) and
    a running market-data server: every frame gets exactly one reply, a result
    or an error with a documented code (only a frame over 64 KiB closes the
    connection, with 1009, and the test reconnects), the connection stays open
    and the services log no traceback (caplog: the servers run in-process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway_helpers import ALICE, RawClient, make_config, running_gateway
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from contract.commands import MARKET_TYPES, STOP_TYPES, Command, Place
from contract.errors import ERROR_CODES, StreamexError
from contract.market import DEFAULT_MARKETS
from contract.wire import RequestError
from gateway.validation import METHODS, ORDER_METHODS, commands_for, decode_request
from marketdata.feed import MarketFeed
from marketdata.requests import parse_request
from marketdata.server import FeedServer

MAX_FRAME = 64 * 1024
"""Both services' frame limit (bytes of the message)."""
MARKETS = {m.symbol: m for m in DEFAULT_MARKETS}
SYMBOLS = frozenset(MARKETS)

# -- JSON text ------------------------------------------------------------------------------

FIELD_NAMES = ["id", "method", "params", "symbol", "side", "type", "qty", "price", "tif",
               "post_only", "client_order_id", "stp", "order_id", "api_key", "timestamp",
               "signature", "cancel_on_disconnect", "stop_price", "expire_time", "display_qty",
               "channel", "depth", "junk", ""]
GOOD_STRINGS = ["BTC-USD", "ETH-USD", "XRP-USD", "buy", "sell", "limit", "market", "stop_limit",
                "stop_market", "take_profit_limit", "take_profit_market", "GTC", "IOC", "FOK",
                "GTD", "0", "-1", "1", "0.5", "100.25", "0.0001", "1e9999", "NaN",
                "1-0", "99999999999999999999-1", "abc", "abc\n", "x" * 36, "x" * 36 + "\n",
                "cancel_both", "none", "book", "trades", "ticker", ALICE.api_key, "", "\u0000",
                *METHODS, "subscribe", "unsubscribe"]


def _dumps(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


json_strings = st.one_of(
    st.sampled_from(GOOD_STRINGS).map(json.dumps),
    st.builds(_dumps, st.text(max_size=40), st.booleans()),
    st.sampled_from(['"\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\x41"',
                     '"\\', '"unterminated', '"\u2028\u2029"', '"\\/"', "'single'"]),
    # Huge strings: one character repeated up to the frame limit.
    st.builds(lambda c, n, a: _dumps(c * n, a), st.characters(codec="utf-8"),
              st.integers(0, 60_000), st.booleans()),
)
json_numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.integers(min_value=2**63 - 2, max_value=2**63 + 2).map(str),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2).map(str),
    st.integers(1, 6_000).map(lambda n: "9" * n),  # beyond any int and float
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "-1e999", "1e-999", "-0", "0.0", "1E2", "1e", "01", "1.", ".5",
                     "NaN", "Infinity", "-Infinity", "+1", "0x10", "1_000"]),
)
json_scalars = st.one_of(st.sampled_from(["null", "true", "false", "nul", "True"]),
                         json_numbers, json_strings)
json_keys = st.sampled_from(FIELD_NAMES).map(json.dumps) | json_strings
# (opening, closing) of one level of deep nesting.
NESTS = [("[", "]"), ('{"a":', "}"), ('{"params":', "}"), ('[{"id":1,"x":', "}]"),
         ('{"id":1,"method":"ping","params":', "}"), ("[1,", "]"), ('{"":', "}")]


def _obj(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


def _arr(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _deep(nest: tuple[str, str], depth: int, inner: str) -> str:
    opening, closing = nest
    return opening * depth + inner + closing * depth


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(inner, max_size=6).map(_arr),
        st.lists(st.tuples(json_keys, inner), max_size=6).map(_obj),  # duplicate keys too
        st.builds(_deep, st.sampled_from(NESTS), st.integers(1, 2_000) | st.integers(1, 20_000),
                  inner),
    )


json_values = st.recursive(json_scalars, _extend, max_leaves=12)

# Frames shaped like requests: mostly a real method with params of its own fields, the
# protocol's values (good and bad) or anything; sometimes repeated or unknown keys.
FIELDS: dict[str, tuple[list[str], list[str]]] = {  # method -> (required, optional) fields
    "ping": ([], []), "markets": ([], []),
    "logon": (["api_key", "timestamp", "signature"], ["cancel_on_disconnect"]),
    "order.place": (["symbol", "side", "type", "qty", "price"],
                    ["tif", "post_only", "client_order_id", "stp", "stop_price", "expire_time",
                     "display_qty"]),
    "order.cancel": (["symbol", "order_id"], ["client_order_id"]),
    "order.amend": (["symbol", "client_order_id"], ["order_id", "qty", "price", "stop_price"]),
    "order.cancel_all": ([], ["symbol"]), "orders.open": ([], ["symbol"]),
    "subscribe": (["channel", "symbol"], ["depth", "interval"]),
    "unsubscribe": (["channel", "symbol"], ["depth", "interval"]),
}
GOOD: dict[str, list[Any]] = {
    "symbol": ["BTC-USD", "ETH-USD"], "side": ["buy", "sell"],
    "type": ["limit", "market", "stop_limit", "stop_market", "take_profit_limit",
             "take_profit_market"],
    "qty": ["1", "0.5", "0.0001"], "price": ["100.25", "10.00"],
    "tif": ["GTC", "IOC", "FOK", "GTD"],
    "stop_price": ["99.00", "101.50"], "expire_time": [4_102_444_800_000],
    "display_qty": ["0.1", "0.5", "0.0001"],
    "post_only": [True, False], "client_order_id": ["abc", "x" * 36, "A-z_0"],
    "stp": ["cancel_taker", "cancel_maker", "cancel_both", "none"], "order_id": ["1-0"],
    "api_key": [ALICE.api_key], "timestamp": [1_700_000_000_000], "signature": ["00" * 32],
    "cancel_on_disconnect": [True, False], "channel": ["book", "trades", "ticker", "candles"],
    "depth": [10, 25, 100, 500], "interval": ["1m", "5m", "1h", "1d"],
}
BAD: dict[str, list[Any]] = {
    "symbol": ["XRP-USD", "btc-usd", 1, None], "side": ["BUY", "hold"],
    "type": ["stop", "STOP_LOSS"],
    "stop_price": ["99.001", "0", "-1", "1e2", 99, None], "expire_time": [
        0, -1, 1_700_000_000_000, "4102444800000", 1.5, 2**63, None],
    "display_qty": ["0", "0.00015", "2", "abc", 1, None],
    "qty": ["0", "-1", "1e9999", "0.00015", "1001", "NaN", 1, "1\n", " 1", "9" * 5000],
    "price": ["100.255", "0", "1000000.01", "Infinity", 100, None, "1" * 10_000],
    "tif": ["DAY", None, 1], "post_only": ["yes", 0],
    "client_order_id": ["abc\n", "x" * 36 + "\n", "x" * 37, "a b", "", "\u00e9", None, 5],
    "stp": ["never", ""], "order_id": ["abc", "1-2-3", "9" * 30 + "-0", 5, None],
    "api_key": ["nobody", "", "k" * 300], "timestamp": ["1", 10**30, 1.5, -(2**63) - 1],
    "signature": ["zz" * 32, "", "\u0000"], "cancel_on_disconnect": [1, "true"],
    "channel": ["kline", None], "depth": [11, "10", 0, -1, 10**20, None],
    "interval": ["2m", "1M", "", 60, None],
}
METHOD_NAMES = list(FIELDS)
WEIGHTED_METHODS = [*METHOD_NAMES, *["order.place"] * 4, "order.amend", "order.cancel",
                    "logon", "subscribe", "subscribe", "unsubscribe"]


@st.composite
def field_value(draw: st.DrawFn, name: str) -> str:
    roll = draw(st.integers(0, 9))
    if roll < 7:
        return json.dumps(draw(st.sampled_from(GOOD[name])))
    if roll < 9:
        return json.dumps(draw(st.sampled_from(BAD[name])))
    return draw(json_values)


@st.composite
def params_of(draw: st.DrawFn, method: str) -> str:
    """Params of ``method``: its required fields (each rarely left out) and some optional
    ones, mostly good values; sometimes a field twice, an unknown field, shuffled."""
    required, optional = FIELDS[method]
    names = [n for n in required if draw(st.integers(0, 19)) > 0]
    names += [n for n in optional if draw(st.integers(0, 2)) == 0]
    if names and draw(st.integers(0, 9)) == 0:
        names.append(draw(st.sampled_from(names)))  # a duplicate key
    pairs = [(json.dumps(n), draw(field_value(n))) for n in names]
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(json_keys), draw(json_values)))  # an unknown field
    return _obj(draw(st.permutations(pairs)))


@st.composite
def requests(draw: st.DrawFn) -> str:
    method = draw(st.sampled_from(WEIGHTED_METHODS))
    roll = draw(st.integers(0, 19))
    rid = draw(st.integers(-5, 5).map(str) if roll < 15 else envelope_values["id"])
    pairs = [('"id"', rid),
             ('"method"', json.dumps(method) if roll != 16 else draw(envelope_values["method"]))]
    if FIELDS[method] != ([], []) or roll == 17:
        pairs.append(('"params"', draw(params_of(method)) if roll != 18
                      else draw(envelope_values["params"])))
    if roll == 19:
        pairs += draw(st.lists(st.tuples(json_keys, json_values), min_size=1, max_size=3))
    if draw(st.booleans()):
        pairs.reverse()
    return _obj(pairs)


envelope_values = {
    "id": st.one_of(st.integers(-5, 5).map(str), json_numbers,
                    st.sampled_from(['"a"', '""', json.dumps("x" * 65)]), json_values),
    "method": st.one_of(st.sampled_from([*METHOD_NAMES, "nope"]).map(json.dumps), json_values),
    "params": st.one_of(params_of("order.place"), json_values),
    "junk": json_values,
}
envelopes = st.lists(
    st.sampled_from(list(envelope_values)).flatmap(
        lambda key: envelope_values[key].map(lambda value: (json.dumps(key), value))),
    min_size=1, max_size=5).map(_obj)  # keys repeated, in any order
whitespace = st.sampled_from(["", " ", "\n", "\t\r\n ", "\u00a0", "\ufeff"])


def _pad(nbytes: int) -> str:
    """A ping whose unknown params field pads it to exactly ``nbytes`` bytes."""
    head, tail = '{"id":"pad","method":"ping","params":{"pad":"', '"}}'
    return head + "x" * (nbytes - len(head) - len(tail)) + tail


def size_of(frame: str | bytes) -> int:
    return len(frame.encode()) if isinstance(frame, str) else len(frame)


def _within_limit(frame: str | bytes) -> bool:
    return size_of(frame) <= MAX_FRAME


texts = st.one_of(
    st.builds(lambda a, frame, b: a + frame + b, whitespace, requests(), whitespace),
    requests(),
    requests(),
    requests(),
    envelopes,
    json_values,
    st.text(max_size=300),
).filter(_within_limit)
frames: st.SearchStrategy[str | bytes] = st.one_of(texts, st.binary(max_size=300))
"""Frames up to the 64 KiB limit."""
frames_and_oversized: st.SearchStrategy[str | bytes] = st.one_of(
    frames, st.integers(MAX_FRAME - 8, MAX_FRAME + 8).map(_pad))  # at the limit, either side
"""Also frames just over the limit, which close the connection (1009)."""


def check_refusal(exc: StreamexError) -> None:
    assert exc.code in ERROR_CODES, exc.code
    assert exc.message and len(exc.message) < 300, exc.message
    if isinstance(exc, RequestError):
        assert exc.request_id is None or type(exc.request_id) in (int, str)


CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")


def check_command(symbol: str, cmd: Command) -> None:
    """What an accepted order-entry request may send to an engine (PROTOCOL.md)."""
    assert symbol in MARKETS
    coid = getattr(cmd, "client_order_id", None)
    assert coid is None or CLIENT_ORDER_ID.fullmatch(coid), coid
    if isinstance(cmd, Place):
        market = MARKETS[symbol]
        assert market.min_lots <= cmd.qty <= market.max_lots
        assert cmd.type in MARKET_TYPES or market.min_ticks <= cmd.price <= market.max_ticks
        # Section B: a trigger on the stop types only, within the band; an expiry on GTD
        # only; an iceberg's slice of at most its quantity.
        assert (cmd.type in STOP_TYPES) == (cmd.stop_price > 0)
        assert cmd.stop_price == 0 or market.min_ticks <= cmd.stop_price <= market.max_ticks
        assert (cmd.tif == "GTD") == (cmd.expire_time > 0)
        assert 0 <= cmd.display_qty <= cmd.qty


# -- (a) the pure decoders --------------------------------------------------------------------

FUZZ = settings(max_examples=700, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


# The outside tester's findings, always tried first.
TESTER_FRAMES = [
    '{"a":' * 1000 + "1" + "}" * 1000,
    '{"id": 1, "method": "ping", "extra": ' + '{"a":' * 1000 + "1" + "}" * 1000 + "}",
    '{"id": 1, "method": "subscribe", "params": ' + "[" * 1000 + "]" * 1000 + "}",
    json.dumps({"id": 1, "method": "order.place", "params": {
        "symbol": "BTC-USD", "side": "buy", "type": "limit", "qty": "1", "price": "10.00",
        "client_order_id": "abc\n"}}),
    json.dumps({"id": 1, "method": "order.cancel", "params": {
        "symbol": "BTC-USD", "client_order_id": "x" * 36 + "\n"}}),
]


def with_tester_frames(test: Any) -> Any:
    for frame in TESTER_FRAMES:
        test = example(frame)(test)
    return test


@FUZZ
@given(frames)
@with_tester_frames
def test_gateway_decoder_refuses_with_documented_codes_only(frame: str | bytes) -> None:
    try:
        request = decode_request(frame)
        if request.method in ORDER_METHODS:
            for symbol, cmd in commands_for(request.params, MARKETS, "alice"):
                check_command(symbol, cmd)
    except StreamexError as exc:
        check_refusal(exc)


@FUZZ
@given(frames)
@with_tester_frames
def test_marketdata_decoder_refuses_with_documented_codes_only(frame: str | bytes) -> None:
    try:
        request = parse_request(frame, SYMBOLS)
        assert request.method in ("ping", "markets", "subscribe", "unsubscribe")
    except RequestError as exc:
        check_refusal(exc)


# -- (b) over real websockets to running services --------------------------------------------

WIRE = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example,
                                       HealthCheck.function_scoped_fixture])


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.exc_info is not None or "Traceback" in r.getMessage()
            or "handler failed" in r.getMessage()]


class Peer:
    """One client connection, reopened (and logged on again) after a 1009 close."""

    def __init__(self, url: str, logon: bool) -> None:
        self.url = url
        self.logon = logon
        self.raw: RawClient | None = None
        self.connections = 0

    async def client(self) -> RawClient:
        if self.raw is None:
            self.raw = await RawClient.open(self.url)
            self.connections += 1
            if self.logon:
                assert (await self.raw.logon(ALICE))["result"]["account"] == "alice"
        return self.raw

    async def exchange(self, frame: str | bytes) -> None:
        """Send ``frame``; check its one reply (or the 1009 close of an oversized frame)."""
        raw = await self.client()
        await raw.send(frame)
        if size_of(frame) > MAX_FRAME:
            with pytest.raises(ConnectionClosed) as closed:
                await raw.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            self.raw = None
            return
        while True:
            reply: Any = await raw.recv()
            if isinstance(reply, dict) and "channel" in reply:
                continue  # a push (market data: a subscription's snapshot, a heartbeat)
            break
        assert isinstance(reply, dict) and "id" in reply, reply
        if "error" in reply:
            error = reply["error"]
            assert error["code"] in ERROR_CODES, reply
            assert error["message"] and len(error["message"]) < 300, reply
        else:
            assert set(reply) == {"id", "result"}, reply
        # The connection is still open: the next frame is answered too (checked by the
        # next example; the last one by the test's final ping).

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()


@pytest.fixture
async def gateway_peer(redis_url: str) -> AsyncIterator[Peer]:
    async with running_gateway(make_config(), redis_url) as (_, url):
        peer = Peer(url, logon=True)
        yield peer
        await peer.close()


@pytest.fixture
async def marketdata_peer() -> AsyncIterator[Peer]:
    feeds = {m.symbol: MarketFeed(m) for m in DEFAULT_MARKETS}
    server = FeedServer(DEFAULT_MARKETS, feeds)
    await server.start("127.0.0.1", 0)
    peer = Peer(f"ws://127.0.0.1:{server.port}/", logon=False)
    try:
        yield peer
        await peer.close()
    finally:
        await server.close()


async def _still_open(peer: Peer) -> None:
    raw = await peer.client()
    reply = await raw.call({"id": "last", "method": "ping"})
    assert reply["id"] == "last" and "result" in reply


@WIRE
@given(frame=frames_and_oversized)
async def test_gateway_answers_every_frame_over_one_connection(
        gateway_peer: Peer, caplog: pytest.LogCaptureFixture, frame: str | bytes) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()  # one example's records each (the fixture lives across examples)
    async with asyncio.timeout(20):
        await gateway_peer.exchange(frame)
        await _still_open(gateway_peer)
    assert not tracebacks(caplog)


@WIRE
@given(frame=frames_and_oversized)
async def test_marketdata_answers_every_frame_over_one_connection(
        marketdata_peer: Peer, caplog: pytest.LogCaptureFixture, frame: str | bytes) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()  # one example's records each (the fixture lives across examples)
    async with asyncio.timeout(20):
        await marketdata_peer.exchange(frame)
        await _still_open(marketdata_peer)
    assert not tracebacks(caplog)
