"""``streamex admin``: operator commands that write to the system's input streams.

- ``deposit|withdraw --account ID --asset A --amount X --ref R``: adds the
  transfer to the account's risk shard and waits for the risk engine's
  answer; idempotent by ``--ref`` (the same ref again changes nothing and
  says ``duplicate``). Prints one JSON object; exit 0 when applied or
  duplicate, 1 when rejected (``INSUFFICIENT_FUNDS``) or unanswered in
  ``--timeout`` seconds, 2 on bad arguments.
- ``balances [--account ID]``: every account's balances (or one's) as
  committed: each shard's snapshot plus the ``Balance`` events after it.
  The fee account's balance is kept per shard (each shard credits the fees
  its accounts pay) and printed summed.
- ``audit``: replays each risk shard's input from the retained history (from
  its first entry when nothing was trimmed, else from its snapshot, and says
  so) through a fresh ledger, checks its invariants and that it ends where
  the committed balances are; checks conservation per asset over all shards;
  and, when no market's ``:out`` and no shard's ``:out`` lost entries to
  retention, that every account's available + held equals its transfers
  plus what its fills imply. Prints a JSON report; exit 0 when every check
  ran and passed, 1 otherwise.

Not on the public websocket: whoever can run this can reach Redis with the
configuration's credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import redis

from contract.ids import ZERO_ID
from contract.market import format_units, parse_units
from contract.risk import (
    Balance,
    Deposit,
    Transfer,
    Withdraw,
    decode_risk_events,
    decode_risk_snapshot,
    encode_risk_command,
    risk_keys,
    risk_shard,
)
from contract.settings import Config
from contract.streams import IN_FIELD, OUT_EVENTS_FIELD
from streamex.config import ConfigError, service_config

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action in ("deposit", "withdraw"):
        p = sub.add_parser(action, help=f"{action} an amount (idempotent by --ref)")
        p.add_argument("--account", required=True)
        p.add_argument("--asset", required=True)
        p.add_argument("--amount", required=True, help="decimal amount, e.g. 100.5")
        p.add_argument("--ref", required=True, help="unique reference of this transfer")
        p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="how long to wait for the risk engine (default: %(default)s)")
        _common(p)
    p = sub.add_parser("balances", help="print committed balances as JSON")
    p.add_argument("--account", default=None)
    _common(p)
    p = sub.add_parser("audit", help="replay the risk and market streams and check the books")
    _common(p)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="TOML configuration file")
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: the config's [redis] url)")


def _client(config: Config, url: str) -> Any:
    if config.redis.cluster:
        return redis.RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


def run(args: argparse.Namespace) -> int:
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex admin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not config.risk.enabled:
        print("streamex admin: the risk stage is off ([risk] enabled = false): there are no "
              "balances", file=sys.stderr)
        return EXIT_USAGE
    client = _client(config, url)
    try:
        if args.action == "balances":
            print(json.dumps(balances(client, config, args.account), indent=2, sort_keys=True))
            return 0
        if args.action == "audit":
            report = audit(client, config)
            print(json.dumps(report, indent=2, sort_keys=True))
            return 0 if report["ok"] else 1
        code: int = _transfer(client, config, args)
        return code
    finally:
        client.close()


def _transfer(client: Any, config: Config, args: argparse.Namespace) -> int:
    units = config.asset_units
    if args.asset not in units:
        print(f"streamex admin: --asset: no market trades {args.asset!r} "
              f"(assets: {', '.join(sorted(units))})", file=sys.stderr)
        return EXIT_USAGE
    try:
        amount = parse_units(args.amount, units[args.asset])
    except ValueError as exc:
        print(f"streamex admin: --amount: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if amount <= 0:
        print("streamex admin: --amount: must be greater than zero", file=sys.stderr)
        return EXIT_USAGE
    kind = Deposit if args.action == "deposit" else Withdraw
    keys = risk_keys(risk_shard(args.account, config.risk.shards))
    last = client.xrevrange(keys.output, count=1)
    after = last[0][0] if last else ZERO_ID
    client.xadd(keys.input, {IN_FIELD: encode_risk_command(
        kind(args.account, args.asset, amount, args.ref))})
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        reply = client.xread({keys.output: after}, count=100, block=200)
        for _, entries in reply or ():
            for out_id, fields in entries:
                after = out_id
                for e in decode_risk_events(fields[OUT_EVENTS_FIELD]):
                    if type(e) is Transfer and e.ref == args.ref:
                        decimals = units[e.asset]
                        print(json.dumps({
                            "status": e.status, "reason": e.reason, "ref": e.ref,
                            "account": e.account, "asset": e.asset, "direction": e.direction,
                            "amount": format_units(e.amount, decimals)}))
                        return 0 if e.status in ("applied", "duplicate") else 1
    print(json.dumps({"status": "unanswered", "ref": args.ref,
                      "reason": f"no answer from the risk engine in {args.timeout:g} s (is "
                                "`streamex risk` running?); the transfer is queued and will "
                                "be applied once"}))
    return 1


def balances(client: Any, config: Config, account: str | None) -> dict[str, Any]:
    """``{account: {asset: {"available", "held"}}}`` as committed, over every shard."""
    totals: dict[tuple[str, str], list[int]] = {}
    for shard in range(config.risk.shards):
        keys = risk_keys(shard)
        mine: dict[tuple[str, str], list[int]] = {}
        after = ZERO_ID
        blob = client.get(keys.snap)
        if blob is not None:
            snap = decode_risk_snapshot(blob)
            after = snap.last_out_id.encode()
            for b in snap.balances:
                mine[(b.account, b.asset)] = [b.available, b.held]
        start = b"(" + after if after != ZERO_ID else b"-"
        while True:
            entries = client.xrange(keys.output, start, "+", count=1000)
            for _, fields in entries:
                for e in decode_risk_events(fields[OUT_EVENTS_FIELD]):
                    if type(e) is Balance:
                        mine[(e.account, e.asset)] = [e.available, e.held]
            if len(entries) < 1000:
                break
            start = b"(" + entries[-1][0]
        for key, (available, held) in mine.items():
            total = totals.setdefault(key, [0, 0])
            total[0] += available
            total[1] += held
    units = config.asset_units
    out: dict[str, Any] = {}
    for (acct, asset), (available, held) in sorted(totals.items()):
        if account is not None and acct != account:
            continue
        decimals = units.get(asset, 0)
        out.setdefault(acct, {})[asset] = {"available": format_units(available, decimals),
                                           "held": format_units(held, decimals)}
    return out


def _trimmed(client: Any, stream: str) -> int:
    """Entries ``stream`` lost to trimming (Redis 7's XINFO ``entries-added`` - length)."""
    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError:  # no such stream: nothing was ever added
        return 0
    added = info.get("entries-added")
    return 0 if added is None else int(added) - int(info["length"])


def _committed_units(client: Any, config: Config) -> dict[tuple[str, str], tuple[int, int]]:
    """Committed ``(available, held)`` per (account, asset), summed over shards, in units."""
    units = config.asset_units
    out = {}
    for account, assets in balances(client, config, None).items():
        for asset, b in assets.items():
            d = units.get(asset, 0)
            out[(account, asset)] = (parse_units(b["available"], d), parse_units(b["held"], d))
    return out


def audit(client: Any, config: Config) -> dict[str, Any]:
    """The audit report (see the module docstring). Cost: O(retained history)."""
    from contract.streams import RawEntry
    from ledger.core import Ledger
    from ledger.snapshot import restore_ledger

    markets = {m.symbol: m for m in config.markets}
    problems: list[str] = []
    notes: list[str] = []
    replayed: dict[tuple[str, str], list[int]] = {}
    net: dict[str, int] = {}
    for shard in range(config.risk.shards):
        keys = risk_keys(shard)
        applied = client.get(keys.applied) or ZERO_ID
        trimmed = _trimmed(client, keys.input)
        blob = client.get(keys.snap)
        if trimmed and blob is None:
            problems.append(f"{keys.input}: {trimmed} entries trimmed and no snapshot")
            continue
        if trimmed:
            assert blob is not None
            ledger = restore_ledger(markets, config.risk.fee_account, decode_risk_snapshot(blob))
            start = b"(" + decode_risk_snapshot(blob).last_input_id.encode()
            notes.append(f"{keys.input}: retention trimmed {trimmed} entries; shard {shard} "
                         "is replayed from its snapshot, not from its first entry")
        else:
            ledger = Ledger(shard, markets, config.risk.fee_account)
            start = b"-"
        count = 0
        while applied != ZERO_ID:
            entries: list[RawEntry] = client.xrange(keys.input, start, applied, count=5000)
            if not entries:
                break
            raw = [[i, [x for kv in f.items() for x in kv]] for i, f in entries]
            ledger.apply_entries(raw, [])
            ledger.take_outbox()
            count += len(entries)
            if entries[-1][0] == applied or len(entries) < 5000:
                break
            start = b"(" + entries[-1][0]
        try:
            ledger._check()
        except AssertionError as exc:
            problems.append(f"shard {shard}: invariant violated after replay: {exc}")
        notes.append(f"shard {shard}: replayed {count} entries up to {applied.decode()}")
        for account, assets in ledger.accounts.items():
            for asset, (available, held) in assets.items():
                row = replayed.setdefault((account, asset), [0, 0])
                row[0] += available
                row[1] += held
        for asset, amount in ledger.net_transfers.items():
            net[asset] = net.get(asset, 0) + amount
    committed = _committed_units(client, config)
    for key in sorted(set(committed) | set(replayed)):
        want = tuple(replayed.get(key, (0, 0)))
        got = committed.get(key, (0, 0))
        if want != got:
            problems.append(f"{key[0]} {key[1]}: committed {got}, replay gives {want}")
    totals: dict[str, int] = {}
    for (_, asset), (available, held) in committed.items():
        totals[asset] = totals.get(asset, 0) + available + held
    for asset in sorted(set(totals) | set(net)):
        if totals.get(asset, 0) != net.get(asset, 0):
            problems.append(f"conservation: {asset}: balances sum to {totals.get(asset, 0)}, "
                            f"deposits - withdrawals = {net.get(asset, 0)} (a trade between "
                            "shards not yet settled by both shows here until it is)")
    fills_checked = _check_fills(client, config, committed, problems, notes)
    return {"ok": not problems, "problems": problems, "notes": notes,
            "fills_checked": fills_checked}


def _check_fills(client: Any, config: Config, committed: dict[tuple[str, str], tuple[int, int]],
                 problems: list[str], notes: list[str]) -> bool:
    """available + held == transfers + fills, per account; False if history is trimmed."""
    from contract.events import Report
    from contract.keys import out_stream
    from contract.streams import events_of

    streams = [out_stream(m.symbol) for m in config.markets]
    streams += [risk_keys(k).output for k in range(config.risk.shards)]
    lost = {s: n for s in streams if (n := _trimmed(client, s))}
    if lost:
        notes.append("fills not checked against balances: retention trimmed "
                     + ", ".join(f"{n} entries of {s}" for s, n in lost.items()))
        return False
    implied: dict[tuple[str, str], int] = {}
    for shard in range(config.risk.shards):
        for _, fields in client.xrange(risk_keys(shard).output):
            for e in decode_risk_events(fields[OUT_EVENTS_FIELD]):
                if type(e) is Transfer and e.status == "applied":
                    sign = 1 if e.direction == "deposit" else -1
                    key = (e.account, e.asset)
                    implied[key] = implied.get(key, 0) + sign * e.amount
    fee_account = config.risk.fee_account
    for m in config.markets:
        for _, fields in client.xrange(out_stream(m.symbol)):
            for r in events_of(fields):
                if not isinstance(r, Report) or r.exec_type != "trade":
                    continue
                base, notional = m.base_amount(r.last_qty), m.notional(r.last_price, r.last_qty)
                sign = 1 if r.side == "buy" else -1
                kb, kq = (r.account, m.base), (r.account, m.quote)
                implied[kb] = implied.get(kb, 0) + sign * base
                implied[kq] = implied.get(kq, 0) - sign * notional - r.fee
                kf = (fee_account, m.quote)
                implied[kf] = implied.get(kf, 0) + r.fee
    for key in sorted(set(implied) | set(committed)):
        total = sum(committed.get(key, (0, 0)))
        if total != implied.get(key, 0):
            problems.append(f"{key[0]} {key[1]}: available + held = {total}, transfers and "
                            f"fills imply {implied.get(key, 0)}")
    return True
