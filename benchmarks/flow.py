"""A seeded, realistic order flow for benchmarks and fault tests.

Mostly passive limit orders near a randomly walking mid, many cancels, some
amends, IOC and market orders; about 5% of messages trade. With
``order_types`` > 0 that share of the passive places are section B's types
instead: icebergs (2/5), stops and take-profits of all four types near the
mid (2/5, many of which trigger as the mid walks) and GTD limits expiring
within two seconds (1/5). The flow is generated against a real
``OrderBook`` so cancels and amends target orders that are actually open.
Deterministic for a given seed. Cost: O(n) plus the matching itself
(generation is not part of any measurement).
"""

from __future__ import annotations

import random

from contract.commands import Amend, Cancel, OrderCommand, Place, Side
from contract.market import Market
from matching.book import OrderBook

ACCOUNTS = tuple(f"acct{i}" for i in range(8))
SIDES: tuple[Side, Side] = ("buy", "sell")


def entry_ids(n: int, start_ms: int = 1_700_000_000_000, per_ms: int = 50) -> list[str]:
    """``n`` increasing stream entry ids, ``per_ms`` per millisecond."""
    return [f"{start_ms + i // per_ms}-{i % per_ms}" for i in range(n)]


def realistic_flow(market: Market, n: int, seed: int = 1,
                   start_ms: int = 1_700_000_000_000,
                   order_types: float = 0.0,
                   gtd_life_ms: tuple[int, int] = (50, 2000)) -> list[tuple[str, OrderCommand]]:
    """``n`` (entry id, command) pairs; apply them in order to a fresh book.

    ``order_types``: the share of passive places that are icebergs, stops or GTD
    orders (0: none, and exactly the flow of earlier versions for a seed). A GTD
    order expires ``gtd_life_ms`` (a range) after its entry's time.
    """
    rng = random.Random(seed)
    book = OrderBook(market)
    ids = entry_ids(n, start_ms)
    mid = (market.min_ticks + market.max_ticks) // 2
    mid = min(mid, 5_000_000)  # 50,000.00 for a 0.01 tick
    open_ids: list[str] = []
    owner: dict[str, str] = {}
    out: list[tuple[str, OrderCommand]] = []
    lot_lo = market.min_lots
    for i in range(n):
        input_id = ids[i]
        r = rng.random()
        if r < 0.003:
            mid += rng.choice((-1, 1))
        acct = ACCOUNTS[rng.randrange(len(ACCOUNTS))]
        cmd: OrderCommand
        if r < 0.41 and open_ids:
            # Cancel a random open order (sometimes an old one already gone).
            for _ in range(3):  # prefer orders still open; a few stale cancels remain
                j = rng.randrange(len(open_ids))
                oid = open_ids[j]
                open_ids[j] = open_ids[-1]
                open_ids.pop()
                if oid in book.orders or not open_ids:
                    break
            cmd = Cancel(owner[oid], order_id=oid)
        elif r < 0.49 and open_ids:
            oid = open_ids[rng.randrange(len(open_ids))]
            o = book.orders.get(oid)
            if o is not None and rng.random() < 0.6:
                cmd = Amend(owner[oid], order_id=oid, qty=max(o.cum_qty + 1, o.qty - lot_lo))
            else:
                cmd = Amend(owner[oid], order_id=oid,
                            price=(o.price if o else mid) + rng.choice((-1, 1)))
        elif r < 0.55:
            side = rng.choice(SIDES)
            qty = lot_lo * rng.randint(1, 20)
            if rng.random() < 0.3:
                cmd = Place(acct, side, "market", qty, stp="none")
            else:
                px = mid + rng.randint(0, 3) if side == "buy" else mid - rng.randint(0, 3)
                cmd = Place(acct, side, "limit", qty, px, tif="IOC", stp="none")
        else:
            side = rng.choice(SIDES)
            offset = 1 + int(rng.expovariate(0.15))
            px = mid - offset if side == "buy" else mid + offset
            # Passive: never through the opposite best (a few still trade via amends).
            if side == "buy" and book.ask_prices and px >= book.ask_prices[0]:
                px = book.ask_prices[0] - 1
            elif side == "sell" and book.bid_prices and px <= book.bid_prices[-1]:
                px = book.bid_prices[-1] + 1
            qty = lot_lo * rng.randint(1, 50)
            if order_types and rng.random() < order_types:
                cmd = _order_type_place(rng, market, acct, side, qty, px, mid,
                                        int(input_id.partition("-")[0]), gtd_life_ms)
            else:
                cmd = Place(acct, side, "limit", qty, px, stp="none")
        events = book.apply(input_id, cmd)
        if isinstance(cmd, Place) and input_id in book.orders:
            open_ids.append(input_id)
            owner[input_id] = cmd.account
        del events
        out.append((input_id, cmd))
    return out


def _order_type_place(rng: random.Random, market: Market, account: str, side: Side,
                      qty: int, px: int, mid: int, now_ms: int,
                      gtd_life_ms: tuple[int, int]) -> Place:
    """One of section B's orders: an iceberg or a GTD limit at the passive price ``px``,
    or a stop / take-profit whose trigger is a few ticks from ``mid``."""
    kind = rng.random()
    if kind < 0.4:
        return Place(account, side, "limit", qty, px, stp="none",
                     display_qty=max(market.min_lots, qty // rng.randint(2, 5)))
    if kind < 0.6:
        return Place(account, side, "limit", qty, px, stp="none", tif="GTD",
                     expire_time=now_ms + rng.randint(*gtd_life_ms))
    order_type = rng.choice(("stop_limit", "stop_market", "take_profit_limit",
                             "take_profit_market"))
    away = rng.randint(1, 12)
    # Beyond the mid on the side the trigger waits for, so it starts untriggered.
    above = (side == "buy") == order_type.startswith("stop_")
    stop = mid + away if above else mid - away
    limit = stop + 3 if side == "buy" else stop - 3
    return Place(account, side, order_type, qty,  # type: ignore[arg-type]
                 limit if order_type.endswith("_limit") else 0, stp="none", stop_price=stop)
