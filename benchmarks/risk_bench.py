"""``streamex bench risk``: the risk engine on Redis Streams against its floor.

One run, one embedded Redis server (no AOF), one risk shard, one market:

1. pre-fill ``sx:{acct-0}:in`` with a deposit per account and both assets,
   then N realistic order commands (``benchmarks.flow``) as ``ToMarket``;
2. floor: ``XREADGROUP COUNT b`` + ``XACK`` of the same entries with the same
   batch size, no decoding, no holds, no output (as ``bench engine``);
3. risk engine: ``EngineRunner`` with the shard's ``RiskStage`` in-process
   (the service's code path) until the last command is committed: holds,
   ``Balance`` events on ``:out``, and every accepted command forwarded to
   the market's ``:in`` (its XADDs are part of the measured time).

No market engine runs, so nothing settles: every place is held and
forwarded. The final ledger is checked against an in-process run of the same
entries, and the market's ``:in`` must hold exactly the forwarded commands.
The last stdout line is JSON with ``commands``, ``commands_per_s``,
``floor_per_s``, ``ratio``, commit latency percentiles, the in-process
reference run's rate (``ledger_per_s``: the ledger alone, one
``apply_entries`` call, no I/O) and the CPU seconds the engine process and
Redis spent during the measured run (and Redis during the floor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import msgspec

from benchmarks.engine_bench import _floor, _pct, _raw_client
from contract.commands import Place
from contract.market import DEFAULT_MARKETS
from contract.risk import (
    Deposit,
    RiskCommand,
    ToMarket,
    encode_risk_command,
    encode_risk_snapshot,
    risk_keys,
)
from contract.settings import EngineConfig
from contract.streams import IN_FIELD
from engine.runner import EXIT_OK, EngineRunner
from ledger.core import Ledger
from ledger.snapshot import take_risk_snapshot
from risk.stage import RiskStage
from streamex.gc_tuning import tune_gc
from streamex.redis_server import RedisServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--commands", type=int, default=200_000, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=EngineConfig().batch_size,
                        help="XREADGROUP COUNT for engine and floor (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="flow seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")


def _entries(n: int, seed: int) -> list[tuple[str, RiskCommand]]:
    from benchmarks.flow import entry_ids, realistic_flow

    market = DEFAULT_MARKETS[0]
    flow = realistic_flow(market, n, seed)
    accounts = sorted({cmd.account for _, cmd in flow})
    deposits: list[RiskCommand] = []
    for account in accounts:
        deposits.append(Deposit(account, market.quote, 10**18, f"bench:{account}:q"))
        deposits.append(Deposit(account, market.base, 10**15, f"bench:{account}:b"))
    ids = entry_ids(len(deposits) + len(flow))
    orders: list[RiskCommand] = []
    last_price = market.min_ticks
    for _, cmd in flow:
        if isinstance(cmd, Place) and cmd.type == "limit":
            last_price = cmd.price
        elif isinstance(cmd, Place) and cmd.side == "buy":  # by budget, as the gateway sends
            cmd = msgspec.structs.replace(
                cmd, qty=0, quote_qty=market.buy_hold(last_price * 102 // 100, cmd.qty))
        orders.append(ToMarket(market.symbol, cmd))
    commands = deposits + orders
    return list(zip(ids, commands, strict=True))


def _prefill(client: Any, key: str, entries: list[tuple[str, RiskCommand]]) -> None:
    for i in range(0, len(entries), 5000):
        pipe = client.pipeline(transaction=False)
        for entry_id, cmd in entries[i:i + 5000]:
            pipe.execute_command("XADD", key, entry_id, IN_FIELD, encode_risk_command(cmd))
        pipe.execute()


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace) -> int:
    if args.commands < 1 or args.batch_size < 1:
        print("streamex bench risk: --commands and --batch-size must be positive",
              file=sys.stderr)
        return 2
    market = DEFAULT_MARKETS[0]
    keys = risk_keys(0)
    tune_gc()

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    entries = _entries(args.commands, args.seed)
    raw = [[i.encode(), [IN_FIELD, encode_risk_command(c)]] for i, c in entries]
    reference = Ledger(0, {market.symbol: market}, "fees")
    scratch: list[Any] = []
    ledger_started = time.perf_counter()
    reference.apply_entries(raw, scratch)
    ledger_s = time.perf_counter() - ledger_started
    forwards = len(reference.take_outbox())
    last_id = entries[-1][0].encode()

    with RedisServer() as server:
        client = _raw_client(server.url)
        version = client.info("server")["redis_version"]
        _prefill(client, keys.input, entries)
        say(f"prefilled {len(entries)} commands into {keys.input} (redis {version})")
        floor_cpu = _cpu_s(server.pid)
        floor_s = _floor(client, keys.input, len(entries), args.batch_size)
        floor_redis_cpu_s = _cpu_s(server.pid) - floor_cpu
        say(f"floor  XREADGROUP+XACK  {len(entries) / floor_s:12,.0f} entries/s")
        settings = EngineConfig(batch_size=args.batch_size, snapshot_every=2**31 - 1,
                                snapshot_interval_s=3600.0)
        stage = RiskStage(0, [market], "fees")
        runner = EngineRunner([server.url], [stage], settings, "bench", stats_interval_s=3600.0,
                              record_latencies=True)
        redis_cpu = _cpu_s(server.pid)
        cpu = time.process_time()
        started = time.perf_counter()
        code = runner.run(until_applied={stage.name: last_id})
        engine_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        redis_cpu_s = _cpu_s(server.pid) - redis_cpu
        stats = runner.stats(stage.name)
        forwarded_in_market = client.xlen(f"sx:{{{market.symbol}}}:in")
        client.close()

    core = runner.core(stage.name)
    mine = encode_risk_snapshot(take_risk_snapshot(core.ledger, "", ""))  # type: ignore[attr-defined]
    want = encode_risk_snapshot(take_risk_snapshot(reference, "", ""))
    if code != EXIT_OK or stats.applied != len(entries) or mine != want \
            or forwarded_in_market != forwards or stage.forwarded != forwards:
        print(f"streamex bench risk: wrong result: exit {code}, applied {stats.applied} of "
              f"{len(entries)}, same ledger={mine == want}, forwarded {stage.forwarded} / "
              f"in market {forwarded_in_market} of {forwards}", file=sys.stderr)
        return 1
    lat = stats.commit_latencies_s
    result: dict[str, Any] = {
        "bench": "risk",
        "commands": len(entries),
        "forwarded": forwards,
        "batch_size": args.batch_size,
        "commands_per_s": round(len(entries) / engine_s),
        "floor_per_s": round(len(entries) / floor_s),
        "ratio": round(floor_s / engine_s, 3),
        "batches": stats.batches,
        "ledger_per_s": round(len(entries) / ledger_s),
        "engine_cpu_s": round(cpu_s, 3),
        "redis_cpu_s": round(redis_cpu_s, 3),
        "floor_redis_cpu_s": round(floor_redis_cpu_s, 3),
        "commit_ms_p50": round(_pct(lat, 0.5) * 1000, 3),
        "commit_ms_p99": round(_pct(lat, 0.99) * 1000, 3),
        "commit_ms_p999": round(_pct(lat, 0.999) * 1000, 3),
        "commit_ms_max": round(max(lat) * 1000, 3),
        "engine_s": round(engine_s, 3),
        "redis": version,
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    say(f"risk engine (service path) {result['commands_per_s']:10,} commands/s  ratio "
        f"{result['ratio']:.2f} of floor; {stats.batches} batches, commit p50 "
        f"{result['commit_ms_p50']} ms p99 {result['commit_ms_p99']} ms p99.9 "
        f"{result['commit_ms_p999']} ms max {result['commit_ms_max']} ms "
        f"(load {result['load_1m']})")
    say(f"ledger alone (in-process, no I/O) {result['ledger_per_s']:10,} commands/s; CPU during "
        f"the run: engine process {cpu_s:.2f} s, redis {redis_cpu_s:.2f} s of {engine_s:.2f} s "
        f"(floor: redis {floor_redis_cpu_s:.2f} s of {floor_s:.2f} s)")
    print(json.dumps(result))
    return 0
