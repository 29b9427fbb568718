"""Helpers for the engine-runner tests: real engine processes, flows and stream checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis
from streamex_process import StreamexProcess
from timing import TIMEOUT_S

from contract import keys
from contract.commands import Command, encode_command
from contract.events import Event, Report, encode_events
from contract.market import Market
from contract.snapshot import Snapshot, decode_snapshot, encode_snapshot
from contract.streams import IN_FIELD, events_of
from matching.apply import apply_entries
from matching.book import OrderBook
from matching.snapshot import take_snapshot

REPO = Path(__file__).resolve().parent.parent


def write_config(directory: Path, **engine: int | float) -> Path:
    """A TOML config with the default markets and the given ``[engine]`` settings."""
    lines = ["[engine]"] + [f"{k} = {v!r}" for k, v in engine.items()]
    path = directory / "streamex.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class EngineProcess(StreamexProcess):
    """``python -m streamex engine`` as a child process, its log in ``log_path``."""

    def __init__(self, redis_url: str, config: Path, consumer: str, log_path: Path,
                 markets: Sequence[str] | None = None) -> None:
        args = ["engine", "--config", str(config), "--redis-url", redis_url,
                "--consumer", consumer, "--stats-interval", "1"]
        if markets:
            args += ["--markets", ",".join(markets)]
        super().__init__(args, log_path, timeout_s=TIMEOUT_S)

    def cleanup(self) -> None:
        self.kill()


# -- flows --------------------------------------------------------------------------


def xadd_commands(client: redis.Redis, symbol: str, pairs: Sequence[tuple[str, Command]],
                  chunk: int = 1000) -> None:
    """XADD ``(entry id, command)`` pairs with their explicit ids, pipelined."""
    key = keys.in_stream(symbol)
    for i in range(0, len(pairs), chunk):
        pipe = client.pipeline(transaction=False)
        for entry_id, cmd in pairs[i:i + chunk]:
            pipe.xadd(key, {IN_FIELD: encode_command(cmd)}, id=entry_id)
        pipe.execute()


def reference_run(market: Market, entries: Iterable[tuple[str, dict[bytes, bytes]]]
                  ) -> tuple[list[Event], OrderBook]:
    """Events and final book of an uninterrupted in-process run over raw ``:in`` entries."""
    book = OrderBook(market)
    events: list[Event] = []
    raw = [[entry_id.encode(), [x for kv in fields.items() for x in kv]]
           for entry_id, fields in entries]
    apply_entries(book, raw, events)
    return events, book


def command_entries(pairs: Sequence[tuple[str, Command]]
                    ) -> list[tuple[str, dict[bytes, bytes]]]:
    return [(entry_id, {IN_FIELD: encode_command(cmd)}) for entry_id, cmd in pairs]


# -- reading the output --------------------------------------------------------------


def out_entries(client: redis.Redis, symbol: str) -> list[tuple[bytes, bytes, list[Event]]]:
    """Every ``:out`` entry as ``(out id, last input id, events)``."""
    result = []
    for out_id, fields in client.xrange(keys.out_stream(symbol)):
        result.append((out_id, fields[b"in"], events_of(fields)))
    return result


def out_events(client: redis.Redis, symbol: str) -> list[Event]:
    return [e for _, _, events in out_entries(client, symbol) for e in events]


def assert_contiguous(events: Sequence[Event], first: int = 1) -> None:
    """Event seqs are ``first, first + 1, ...``: no gap, no duplicate."""
    seqs = [e.seq for e in events]
    expected = list(range(first, first + len(seqs)))
    if seqs != expected:
        bad = next(i for i, (a, b) in enumerate(zip(seqs, expected, strict=True)) if a != b)
        raise AssertionError(f"seq {seqs[bad]} at position {bad}, expected {expected[bad]} "
                             f"(around: {seqs[max(0, bad - 3):bad + 3]})")


def assert_same_events(actual: Sequence[Event], expected: Sequence[Event]) -> None:
    """Byte-identical encodings, with a readable first difference on failure."""
    if encode_events(list(actual)) == encode_events(list(expected)):
        return
    for i, (a, b) in enumerate(zip(actual, expected, strict=False)):
        if a != b:
            raise AssertionError(f"event {i} differs:\n  got  {a}\n  want {b}")
    raise AssertionError(f"{len(actual)} events, expected {len(expected)}")


def stored_snapshot(client: redis.Redis, symbol: str) -> Snapshot | None:
    data = client.get(keys.snap_key(symbol))
    return None if data is None else decode_snapshot(data)  # type: ignore[arg-type]


def same_book(snapshot: Snapshot, book: OrderBook) -> bool:
    """The snapshot's book state (orders and counters) equals ``book``'s, byte for byte."""
    mine = encode_snapshot(take_snapshot(book, snapshot.last_input_id, snapshot.last_out_id))
    return mine == encode_snapshot(snapshot)


def applied_id(client: redis.Redis, symbol: str) -> bytes:
    value = client.get(keys.applied_key(symbol))
    return value if isinstance(value, bytes) else b"0-0"


def placed_reports(events: Iterable[Event]) -> list[str]:
    """Order ids of every ``new`` or ``rejected`` report (one per place command)."""
    return [e.order_id for e in events
            if isinstance(e, Report) and e.exec_type in ("new", "rejected")]


def msgpack(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)
