"""The command and event contract: msgpack shapes, defaults, round trips, rejects."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contract.commands import (
    Amend,
    Cancel,
    CancelAll,
    Command,
    Place,
    decode_command,
    encode_command,
)
from contract.events import (
    BookUpdate,
    CancelRejected,
    Event,
    InputRejected,
    Report,
    Trade,
    decode_events,
    encode_events,
)
from contract.ids import ts_of
from contract.market import DEFAULT_MARKETS
from matching.book import OrderBook

COMMANDS: list[Command] = [
    Place("A", "buy", "limit", 5, 100),
    Place("A", "sell", "market", 7, 0, "FOK", True, "cid-1", "cancel_both"),
    Cancel("A", "1700000000000-0"),
    Cancel("A", client_order_id="cid-1"),
    Amend("A", "1-0", None, 9, None),
    Amend("A", None, "cid-1", None, 101),
    CancelAll("A"),
    CancelAll("A", ["1-0", "2-0"], "CANCEL_ON_DISCONNECT"),
]

EVENTS: list[Event] = [
    Report(1, 1700000000000, "A", "1700000000000-0", "cid", "buy", "limit", "GTC", 100, 5,
           "trade", "partially_filled", 2, 99, 2, 3, 198, "taker", 7, None),
    Report(2, 1, "B", "1-0", None, "sell", "market", "IOC", 0, 5, "expired", "expired", 0, 0,
           0, 0, 0, None, None, "NO_LIQUIDITY"),
    CancelRejected(3, 1, "A", None, "cid", "1-1", "UNKNOWN_ORDER"),
    Trade(4, 1, 7, 99, 2, "buy", "0-1", "1-0"),
    BookUpdate(5, 1, ((100, 3), (99, 0)), ((101, 2),)),
    InputRejected(6, 1, "1-2", "BAD_REQUEST"),
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip(cmd: Command) -> None:
    data = encode_command(cmd)
    assert decode_command(data) == cmd
    assert type(decode_command(data)) is type(cmd)


def test_commands_are_compact_tagged_arrays() -> None:
    assert msgspec.msgpack.decode(encode_command(Place("A", "buy", "limit", 5, 100))) == [
        "place", "A", "buy", "limit", 5, 100, "GTC", False, None, "cancel_taker", 0, 0, 0, 0]
    assert msgspec.msgpack.decode(encode_command(Place(
        "A", "sell", "stop_limit", 5, 100, "GTD", stop_price=99, expire_time=7,
        display_qty=2))) == [
        "place", "A", "sell", "stop_limit", 5, 100, "GTD", False, None, "cancel_taker", 0,
        99, 7, 2]
    assert msgspec.msgpack.decode(encode_command(CancelAll("A"))) == [
        "cancel_all", "A", None, "USER_CANCEL"]
    assert msgspec.msgpack.decode(encode_command(Cancel("A", "1-0"))) == [
        "cancel", "A", "1-0", None]
    assert msgspec.msgpack.decode(encode_command(Amend("A", "1-0", qty=2))) == [
        "amend", "A", "1-0", None, 2, None, None]


def test_missing_trailing_fields_take_their_defaults() -> None:
    raw = msgspec.msgpack.encode(["place", "A", "sell", "limit", 3])
    assert decode_command(raw) == Place("A", "sell", "limit", 3, 0, "GTC", False, None,
                                        "cancel_taker")
    assert decode_command(msgspec.msgpack.encode(["cancel", "A"])) == Cancel("A", None, None)


@pytest.mark.parametrize("raw", [
    ["launch", "A"],  # unknown command
    ["place", "A", "long", "limit", 1, 1],  # unknown side
    ["place", "A", "buy", "stop", 1, 1],  # unknown type
    ["place", "A", "buy", "limit", 1, 1, "GTX"],  # unknown tif
    ["place", "A", "buy", "limit", 1, 1, "GTC", False, None, "cancel_all"],  # unknown stp
    ["place", "A", "buy", "limit", "1", 1],  # qty is not an integer
    ["place", "A", "buy", "limit", 1.5, 1],
    ["place", "A", "buy"],  # required fields missing
    ["cancel_all", "A", "1-0"],  # order_ids must be a list
    {"kind": "cancel", "account": "A"},  # a map, not an array
])
def test_malformed_commands_are_rejected(raw: object) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_command(msgspec.msgpack.encode(raw))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"side": "Buy"}, "side"),  # once rested as a sell: anything but "buy" was a sell
    ({"type": "stop"}, "type"),
    ({"tif": "GTX"}, "tif"),
    ({"stp": "maybe"}, "stp"),
])
def test_a_place_built_in_python_with_a_wrong_value_is_an_error(kwargs: dict[str, str],
                                                                field: str) -> None:
    args: dict[str, Any] = {"account": "A", "side": "buy", "type": "limit", "qty": 5,
                            "price": 100, **kwargs}
    cmd = Place(**args)
    assert cmd.invalid_field() is not None and cmd.invalid_field().startswith(f"{field}: ")
    with pytest.raises(ValueError, match=f"^{field}: "):
        encode_command(cmd)  # never written to a stream
    book = OrderBook(DEFAULT_MARKETS[0])
    events = book.apply("5-0", cmd)
    assert events == [InputRejected(1, 5, "5-0", "BAD_REQUEST")]  # not rested, not matched
    assert not book.orders
    book._check()
    with pytest.raises(ValueError, match="^reason: "):
        CancelAll("A", None, "because")


def test_a_wrong_value_is_refused_by_the_decoder_with_its_field() -> None:
    raw = msgspec.msgpack.encode(["cancel_all", "A", None, "NOT_A_REASON"])
    with pytest.raises(msgspec.ValidationError, match="reason"):
        decode_command(raw)


def test_undecodable_bytes_and_events_are_not_commands() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_command(b"\xc1")
    with pytest.raises(msgspec.DecodeError):
        decode_command(b"")
    with pytest.raises(msgspec.ValidationError):
        decode_command(encode_events(EVENTS[:1])[1:])  # one Report: not a command


def test_events_round_trip_in_order() -> None:
    data = encode_events(EVENTS)
    decoded = decode_events(data)
    assert decoded == EVENTS
    assert [type(e) for e in decoded] == [type(e) for e in EVENTS]
    book = decoded[4]
    assert isinstance(book, BookUpdate) and book.bids == ((100, 3), (99, 0))
    assert encode_events(decoded) == data  # byte-identical after a round trip
    assert decode_events(encode_events([])) == []


def test_event_tags_name_the_event_kind() -> None:
    tags = [msgspec.msgpack.decode(encode_events([e]))[0][0] for e in EVENTS]
    assert tags == ["report", "report", "cancel_rejected", "trade", "book", "input_rejected"]


def test_messages_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Place("A", "buy", "limit", 5, 100).qty = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        InputRejected(6, 1, "1-2", "BAD_REQUEST").seq = 9  # type: ignore[misc]


@pytest.mark.parametrize(("entry_id", "ms"), [
    ("1700000000123-7", 1700000000123), ("0-1", 0), ("5-0", 5), ("42", 42)])
def test_ts_of_is_the_milliseconds_part_of_an_entry_id(entry_id: str, ms: int) -> None:
    assert ts_of(entry_id) == ms
