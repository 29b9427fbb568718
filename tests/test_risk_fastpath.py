"""The risk engine's fast paths give exactly what the general paths give.

- ``Ledger.apply_entries`` forwards the command bytes sliced out of the input
  entry; ``Ledger.apply`` (a decoded command, no input bytes) re-encodes them.
  On random command sequences both give the same events, the same forwarded
  fields (byte for byte) and the same snapshot.
- A ``ToMarket`` written by another encoder (defaults left out, wider ints)
  is forwarded as received: the market decodes it to the same command.
- ``risk.stage._calls`` packs the same bytes as ``hiredis.pack_command``.
"""

from __future__ import annotations

import msgspec
from hiredis import pack_command
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.commands import Amend, Cancel, CancelAll, Place, decode_command, encode_command
from contract.keys import in_stream
from contract.market import Market
from contract.risk import (
    Deposit,
    RiskCommand,
    RiskEvent,
    ToMarket,
    Withdraw,
    decode_risk_command,
    encode_risk_command,
    encode_risk_snapshot,
)
from contract.streams import IN_FIELD, forward_entry
from engine.scripts import APPEND_SCRIPT
from ledger.core import Ledger, to_market_head
from ledger.snapshot import take_risk_snapshot
from risk.stage import Forwards, RiskStage, _by_market, _calls

MARKET = Market("TST-USD", "TST", "USD", "1", "1", "1", "20", "98", "104",
                maker_fee="0.001", taker_fee="0.003")
SYMBOLS = ("TST-USD", "TST-USD", "TST-USD", "NOPE-USD")
ACCOUNTS = ("A", "B", "C")
COIDS = (None, None, "c1", "c2")

accounts = st.sampled_from(ACCOUNTS)
coids = st.sampled_from(COIDS)
places = st.builds(
    Place, accounts, st.sampled_from(("buy", "sell")),
    st.sampled_from(("limit", "limit", "market", "stop_limit", "take_profit_market")),
    st.integers(0, 25), st.integers(90, 110), st.sampled_from(("GTC", "IOC", "GTD")),
    st.booleans(), coids, quote_qty=st.sampled_from((0, 0, 50, 500, 5000)),
    stop_price=st.sampled_from((0, 99, 101)), expire_time=st.sampled_from((0, 10**13)))
order_ids = st.integers(1, 40).map(lambda n: f"{1_700_000_000_000 + n}-0")
cancels = st.builds(Cancel, accounts, st.none() | order_ids, coids)
amends = st.builds(Amend, accounts, st.none() | order_ids, coids,
                   st.none() | st.integers(0, 25), st.none() | st.integers(90, 110),
                   st.none() | st.integers(97, 105))
cancel_alls = st.builds(CancelAll, accounts, st.none() | st.lists(order_ids, max_size=3))
to_markets = st.builds(ToMarket, st.sampled_from(SYMBOLS),
                       st.one_of(places, places, cancels, amends, cancel_alls))
transfers = st.sampled_from((Deposit, Deposit, Withdraw)).flatmap(
    lambda kind: st.builds(kind, accounts, st.sampled_from(("TST", "USD")),
                           st.integers(-1, 5000),
                           st.sampled_from(("r1", "r2", "r3", "r4", "r5", "r6"))))
commands = st.lists(st.one_of(transfers, to_markets, to_markets, to_markets), max_size=60)


def _valid(cmd: RiskCommand) -> bool:
    try:
        encode_risk_command(cmd)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(commands, st.integers(0, 3))
def test_apply_entries_forwards_what_apply_forwards(cmds: list[RiskCommand],
                                                    shard: int) -> None:
    cmds = [c for c in cmds if _valid(c)]
    fast, general = Ledger(shard, {MARKET.symbol: MARKET}), Ledger(shard, {MARKET.symbol: MARKET})
    encoded = [(1_700_000_000_000 + i, encode_risk_command(c)) for i, c in enumerate(cmds, 1)]
    fast_events: list[RiskEvent] = []
    fast.apply_entries([[b"%d-0" % ms, [IN_FIELD, data]] for ms, data in encoded], fast_events)
    general_events: list[RiskEvent] = []
    for ms, data in encoded:
        order_id = f"{ms}-0" if shard == 0 else f"{ms}-0-{shard}"
        general.apply(order_id, ms, decode_risk_command(data), general_events)
    assert fast_events == general_events
    assert fast.take_outbox() == general.take_outbox()
    assert (encode_risk_snapshot(take_risk_snapshot(fast))
            == encode_risk_snapshot(take_risk_snapshot(general)))
    fast._check()


@settings(max_examples=200, deadline=None)
@given(st.one_of(places, cancels, amends, cancel_alls), st.sampled_from(SYMBOLS + ("S" * 40,)))
def test_the_head_is_all_before_the_command(cmd: Place, symbol: str) -> None:
    if isinstance(cmd, Place) and cmd.invalid_field() is not None:
        return
    data = encode_risk_command(ToMarket(symbol, cmd))
    head = to_market_head(symbol)  # fixstr and str8 symbols
    assert data.startswith(head) and data[len(head):] == encode_command(cmd)


def test_a_foreign_encoding_is_forwarded_as_received_and_decodes_the_same() -> None:
    # Place's defaults left out, and qty as a uint32: msgspec writes neither.
    inner = (b"\x96" + b"".join(msgspec.msgpack.encode(x) for x in ("place", "A", "sell", "limit"))
             + b"\xce\x00\x00\x00\x02" + msgspec.msgpack.encode(100))
    wide = b"\x93" + msgspec.msgpack.encode(["to_market", MARKET.symbol])[1:] + inner
    ledger = Ledger(0, {MARKET.symbol: MARKET})
    events: list[RiskEvent] = []
    ledger.apply_entries([[b"5-0", [IN_FIELD, encode_risk_command(Deposit("A", "TST", 9, "r"))]],
                          [b"6-0", [IN_FIELD, wide]]], events)
    [(symbol, fields)] = ledger.take_outbox()
    assert symbol == MARKET.symbol and fields[1] == inner
    assert fields[1] != encode_command(Place("A", "sell", "limit", 2, 100))
    assert decode_command(fields[1]) == Place("A", "sell", "limit", 2, 100)
    assert decode_command(fields[1]) == decode_risk_command(wide).command  # type: ignore[union-attr]
    # The symbol as a str16 (msgspec writes a fixstr): not its head, so re-encoded.
    odd = b"\x93" + msgspec.msgpack.encode("to_market") + b"\xda\x00\x07TST-USD" + inner
    ledger.apply_entries([[b"7-0", [IN_FIELD, odd]]], events)
    [(_, fields)] = ledger.take_outbox()
    assert fields[1] == encode_command(Place("A", "sell", "limit", 2, 100))


def _packed(forwards: list[tuple[str, list[bytes]]]) -> list[tuple[str, bytes]]:
    """What ``_calls`` replaced: ``hiredis.pack_command`` of the flat arguments."""
    flat: dict[str, list[bytes]] = {}
    counts: dict[str, int] = {}
    for symbol, fields in forwards:
        flat.setdefault(symbol, []).extend([b"%d" % len(fields), *fields])
        counts[symbol] = counts.get(symbol, 0) + 1
    return [(in_stream(s), pack_command(("EVALSHA", APPEND_SCRIPT.sha, 1, in_stream(s),  # type: ignore[arg-type]
                                         counts[s], *args)))
            for s, args in flat.items()]


forward_fields = st.builds(forward_entry, st.binary(max_size=300), st.integers(0, 99),
                           st.integers(0, 10**12), st.text(max_size=30))
odd_fields = st.lists(st.binary(max_size=40), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("AAA-USD", "BBB-USD", "C" * 40)),
                          forward_fields | odd_fields), min_size=1, max_size=40))
def test_calls_pack_what_pack_command_packs(forwards: list[tuple[str, list[bytes]]]) -> None:
    assert _calls(_by_market(forwards)) == _packed(forwards)
    packed = Forwards(forwards)
    assert packed.count == len(forwards) and packed.calls == _packed(forwards)


def test_calls_pack_long_values_as_pack_command_does() -> None:
    forwards = [("AAA-USD", forward_entry(b"x" * n, 1, 7, "9-0-1")) for n in (0, 1023, 1024, 5000)]
    assert _calls(_by_market(forwards)) == _packed(forwards)


class _Nodes:
    """A topology stand-in: ``node_of`` by key, ``pipelined`` recorded."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes
        self.sent: list[list[tuple[str, bytes]]] = []

    def node_of(self, key: str) -> str:
        return self.nodes.get(key, "n1")

    def pipelined(self, calls: list[tuple[str, bytes]]) -> list[int]:
        self.sent.append(list(calls))
        return [1] * len(calls)


def test_forwards_go_with_the_commit_on_one_node_and_after_it_across_nodes() -> None:
    other = Market("OTH-USD", "OTH", "USD", "1", "1", "1", "20", "98", "104")
    stage = RiskStage(0, [MARKET, other], "fees")
    core = stage.empty()
    deposits = [Deposit("A", asset, 10**9, asset) for asset in ("TST", "OTH", "USD")]
    cmds: list[RiskCommand] = [
        *deposits, ToMarket(MARKET.symbol, Place("A", "buy", "limit", 2, 100)),
        ToMarket(other.symbol, Place("A", "sell", "limit", 1, 101)),
        ToMarket(MARKET.symbol, Cancel("A", "4-0"))]
    _, effects = core.apply([[f"{i}-0".encode(), [IN_FIELD, encode_risk_command(c)]]
                             for i, c in enumerate(cmds, 1)])
    assert isinstance(effects, Forwards) and effects.count == 3
    want = [(in_stream(MARKET.symbol), 2), (in_stream(other.symbol), 1)]
    assert [(stream, packed.count(b"\r\n$1\r\n6\r\n")) for stream, packed in effects.calls] \
        == want
    one = _Nodes({})
    before = stage.before_commit(one, "sx:{acct-0}:in", effects)  # type: ignore[arg-type]
    assert before == (b"".join(p for _, p in effects.calls), 2) and stage.forwarded == 3
    split = _Nodes({in_stream(other.symbol): "n2"})
    assert stage.before_commit(split, "sx:{acct-0}:in", effects) is None  # type: ignore[arg-type]
    stage.after_commit(split, effects)  # type: ignore[arg-type]
    assert split.sent == [effects.calls] and stage.forwarded == 6
