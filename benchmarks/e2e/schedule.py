"""The plan of a run (every request encoded before timing) and the sender's precise waker.

:func:`build_plan` interleaves :func:`benchmarks.flow.realistic_flow` of
each market into ``n`` requests, each with its connection and, for cancels
and amends, the order it names. Cost: O(n) plus the flow generation, all
before the clock starts. :class:`Waker` waits until an absolute
``time.monotonic_ns()`` on a Linux ``timerfd`` (microsecond precision; the
event loop's timers have 1 ms resolution), optionally spinning the loop for
the last ``SPIN_NS``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from contract.commands import Amend, Cancel, Place
from contract.market import Market

#: Kinds of request in a plan.
PASSIVE, MARKETABLE, CANCEL, AMEND = 0, 1, 2, 3
#: Error replies the realistic flow provokes by design (it cancels orders already gone).
EXPECTED_ERRORS = {CANCEL: {"UNKNOWN_ORDER"}, AMEND: {"UNKNOWN_ORDER", "INVALID_QTY"}}
SPIN_NS = 75_000
"""The sender stops sleeping this long before each due time ..."""
SPIN_MAX_RATE = 2_000
"""... at offered rates up to this (above it, sends are too close to sleep between)."""
SEND_TICK_NS = 100_000
"""Above SPIN_MAX_RATE the sender wakes on a 100 us grid and sends everything due by then
(one timer wake-up per tick, not per order; each send waits at most one tick)."""


# -- the plan: every request encoded before the run ----------------------------


@dataclass
class Plan:
    """The requests of one run, in send order; request ``i`` has JSON id ``i``.

    ``frames[i]`` is the encoded request (cancels and amends name their order
    by ``client_order_id`` there); ``by_id[i]`` is the (prefix, suffix) around
    the real order id, used once the target's ``received`` reply has told it.
    """

    tag: str
    symbols: list[str]
    frames: list[bytes]
    kind: bytearray
    conn: array[int]
    target: array[int]
    by_id: list[tuple[bytes, bytes] | None]
    places: int

    def __len__(self) -> int:
        return len(self.frames)


def build_plan(markets: Sequence[Market], n: int, connections: int, accounts: int,
               seed: int, budget_buys: bool = True) -> Plan:
    """``n`` requests interleaving ``realistic_flow`` of each market. O(n) (+ flow generation).

    ``budget_buys`` (the risk stage is on): a market buy spends ``quote_qty``, its
    quantity at 2% above the market's last limit price, instead of giving ``qty``.
    """
    from benchmarks.flow import realistic_flow

    encode = msgspec.json.encode
    tag = "e" + secrets.token_hex(3) + "-"
    per_market = [realistic_flow(m, n // len(markets) + 1, seed + k,
                                 start_ms=1_700_000_000_000 + k * 10**9)
                  for k, m in enumerate(markets)]
    conns_of = [[c for c in range(connections) if c % accounts == a] for a in range(accounts)]
    next_conn = [0] * accounts
    frames: list[bytes] = []
    kind = bytearray(n)
    conn = array("i", [0]) * n
    target = array("i", [-1]) * n
    by_id: list[tuple[bytes, bytes] | None] = [None] * n
    slot_of: dict[str, int] = {}
    places = 0
    last_price = [m.min_ticks for m in markets]
    for i in range(n):
        k = i % len(markets)
        market = markets[k]
        symbol = market.symbol
        synthetic_id, cmd = per_market[k][i // len(markets)]
        account = int(cmd.account.removeprefix("acct")) % accounts
        params: dict[str, Any]
        if isinstance(cmd, Place):
            options = conns_of[account]
            conn[i] = options[next_conn[account] % len(options)]
            next_conn[account] += 1
            slot_of[f"{k}:{synthetic_id}"] = i
            places += 1
            params = {"symbol": symbol, "side": cmd.side, "type": cmd.type,
                      "qty": market.format_qty(cmd.qty)}
            if cmd.type == "limit":
                last_price[k] = cmd.price
            elif budget_buys and cmd.side == "buy":
                del params["qty"]
                spend = market.buy_hold(last_price[k] * 102 // 100, cmd.qty)
                params["quote_qty"] = market.format_quote(spend)
            if cmd.type == "limit":
                params["price"] = market.format_price(cmd.price)
                if cmd.tif != "GTC":
                    params["tif"] = cmd.tif
            params["stp"] = cmd.stp
            params["client_order_id"] = f"{tag}{i}"
            kind[i] = PASSIVE if cmd.type == "limit" and cmd.tif == "GTC" else MARKETABLE
            frames.append(encode({"id": i, "method": "order.place", "params": params}))
            continue
        assert isinstance(cmd, Cancel | Amend), cmd
        slot = slot_of[f"{k}:{cmd.order_id}"]
        target[i] = slot
        conn[i] = conn[slot]
        method = "order.cancel" if isinstance(cmd, Cancel) else "order.amend"
        kind[i] = CANCEL if isinstance(cmd, Cancel) else AMEND
        extra: dict[str, str] = {}
        if isinstance(cmd, Amend):
            if cmd.qty is not None:
                extra["qty"] = market.format_qty(cmd.qty)
            if cmd.price is not None:
                extra["price"] = market.format_price(cmd.price)
        frames.append(encode({"id": i, "method": method, "params": {
            "symbol": symbol, "client_order_id": f"{tag}{slot}", **extra}}))
        head = encode({"id": i, "method": method, "params": {"symbol": symbol, "order_id": ""}})
        tail = encode(extra)[1:] if extra else b"}"
        # head ends with '"order_id":""}}': cut after the opening quote of the value.
        by_id[i] = (head[:-3], b'"' + (b"," + tail if extra else b"}") + b"}")
    return Plan(tag, [m.symbol for m in markets], frames, kind, conn, target, by_id, places)


def command_counts(plan: Plan) -> dict[str, int]:
    names = ("passive", "marketable", "cancel", "amend")
    counts = Counter(plan.kind)
    return {names[k]: counts.get(k, 0) for k in range(4)}


# -- precise wake-ups ----------------------------------------------------------


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


class Waker:
    """Wait until an absolute ``time.monotonic_ns()`` with microsecond precision.

    Uses a Linux ``timerfd`` (CLOCK_MONOTONIC, absolute) watched by the event
    loop; elsewhere falls back to ``asyncio.sleep`` (1 ms resolution). Close
    with :meth:`close`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None
        self.fd = -1
        self.precise = False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            fd = libc.timerfd_create(time.CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self.fd = fd
        self.precise = True
        self._spec = _ITimerSpec()
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait_until(self, t_ns: int, spin_ns: int = 0) -> None:
        """Return at ``t_ns``; with ``spin_ns``, sleep until that long before it, then
        run the event loop without sleeping (I/O still handled) until it is time.

        Waking a sleeping process costs ~40 us on a VM; the spin spends CPU
        to send on time instead.
        """
        if spin_ns:
            await self.wait_until(t_ns - spin_ns)
            clock = time.monotonic_ns
            while clock() < t_ns:  # noqa: ASYNC110 - a busy wait is the point
                await asyncio.sleep(0)
            return
        if not self.precise:
            await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))
            return
        spec = self._spec
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(t_ns, 1_000_000_000)
        self._future = self._loop.create_future()
        if self._settime(self.fd, 1, ctypes.byref(spec), None) != 0:  # TFD_TIMER_ABSTIME
            self._future = None
            await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))
            return
        await self._future

    def close(self) -> None:
        if self.fd >= 0:
            self._loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.precise = False
