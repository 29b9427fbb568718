"""``streamex status [--json]``: one screen per deployment, read from Redis alone.

Per market and risk shard (``acct-K``): the active engine (the lease's
holder) and its standbys (engine registrations that serve the stage but do
not hold its lease), the fencing epoch, the lag of the ``engine`` consumer
group (entries not yet applied, and the age of the oldest), the last commit
(age of the newest ``:out`` entry), the snapshot (age of the input entry it
covers), the streams' lengths and the age of the oldest ``:out`` entry
(what retention keeps). Per service: its instances (``ops.registry``),
host, pid, uptime, URLs, and whether each refreshes its registration
(``live``) or has stopped (``stale``).

Exit codes: 0 when every stage has a live active engine, 1 when one has
none (no lease holder, or a holder whose registration is gone or stale), 2
on bad arguments or an unreachable Redis. Colour only on a terminal, and
not with ``NO_COLOR`` set. Cost: a few pipelined reads per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import msgspec
import redis
from redis.cluster import RedisCluster

from contract.ids import parse_id
from contract.keys import MarketKeys
from contract.risk import decode_risk_snapshot, risk_keys
from contract.settings import Config
from contract.snapshot import decode_snapshot
from engine.metrics import lags
from ops.registry import STALE_MS, Registration, read_registrations
from streamex.config import ConfigError, display_url, service_config

EXIT_OK = 0
EXIT_NO_ENGINE = 1
EXIT_USAGE = 2
ENGINE_SERVICES = ("engine", "risk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show every market's and risk shard's engines, lag and streams, and every running "
        "service, read from Redis. Exit code 0 when every stage has a live active engine, "
        "1 when one has none, 2 on bad arguments or an unreachable Redis.")
    parser.add_argument("--config", help="TOML configuration file (default: built-in markets)")
    parser.add_argument("--redis-url", help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _client(config: Config, url: str) -> redis.Redis | RedisCluster:
    if config.redis.cluster:
        return RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _age_s(entry_id: str | None, now_ms: float) -> float | None:
    if not entry_id or entry_id == "0-0":
        return None
    return round(max(0.0, now_ms - parse_id(entry_id)[0]) / 1000, 3)


def _stage_rows(client: redis.Redis | RedisCluster, config: Config,
                regs: list[Registration], now_ms: float) -> list[dict[str, Any]]:
    stages: list[tuple[str, MarketKeys, bool]] = [
        (m.symbol, MarketKeys.of(m.symbol), False) for m in config.markets]
    if config.risk.enabled:
        stages += [(risk_keys(k).symbol, risk_keys(k), True)
                   for k in range(config.risk.shards)]
    live = {r.instance: r for r in regs
            if r.service in ENGINE_SERVICES and now_ms - r.updated_ms <= STALE_MS}
    known = {r.instance for r in regs if r.service in ENGINE_SERVICES}
    lag = lags(client, [(name, keys.input) for name, keys, _ in stages])
    rows = []
    for name, keys, is_risk in stages:
        pipe = client.pipeline(transaction=False)
        pipe.get(keys.lease)
        pipe.get(keys.epoch)
        pipe.xlen(keys.input)
        pipe.xlen(keys.output)
        pipe.xrevrange(keys.output, count=1)
        pipe.xrange(keys.output, count=1)
        pipe.get(keys.snap)
        lease, epoch, in_len, out_len, last_out, first_out, snap = pipe.execute()
        holder = _text(lease)
        snapshot_id = None
        if snap is not None:
            try:
                snapshot_id = (decode_risk_snapshot(snap) if is_risk
                               else decode_snapshot(snap)).last_input_id
            except (msgspec.DecodeError, ValueError):
                snapshot_id = None
        standbys = sorted(r.instance for r in live.values()
                          if name in r.stages and r.instance != holder)
        if holder is None:
            active_state = "none"
        elif holder in live:
            active_state = "live"
        elif holder in known:
            active_state = "stale"
        else:
            active_state = "unregistered"  # holds the lease, says nothing of itself
        stage_lag = lag.get(name)
        rows.append({
            "stage": name, "kind": "risk shard" if is_risk else "market",
            "active": holder, "active_state": active_state, "standbys": standbys,
            "epoch": int(epoch) if epoch is not None else None,
            "lag_entries": stage_lag.entries if stage_lag else None,
            "lag_seconds": round(stage_lag.seconds, 3) if stage_lag else None,
            "last_commit_age_s": _age_s(_text(last_out[0][0]) if last_out else None, now_ms),
            "snapshot_covers_age_s": _age_s(snapshot_id, now_ms),
            "in_length": in_len, "out_length": out_len,
            "out_oldest_age_s": _age_s(_text(first_out[0][0]) if first_out else None, now_ms),
            "out_retention": config.engine.out_retention,
        })
    return rows


def _service_rows(regs: list[Registration], now_ms: float) -> list[dict[str, Any]]:
    return [{
        "service": r.service, "instance": r.instance, "host": r.host, "pid": r.pid,
        "uptime_s": round(max(0.0, now_ms - r.started_ms) / 1000, 1),
        "state": "live" if now_ms - r.updated_ms <= STALE_MS else "stale",
        "urls": r.urls, "stages": r.stages, "owned": r.owned,
    } for r in regs]


def collect(client: redis.Redis | RedisCluster, config: Config) -> dict[str, Any]:
    """Everything the status shows, as plain data (what ``--json`` prints)."""
    regs = read_registrations(client)
    now_ms = time.time() * 1000
    stages = _stage_rows(client, config, regs, now_ms)
    return {"time_ms": int(now_ms), "stages": stages, "services": _service_rows(regs, now_ms),
            "ok": all(s["active_state"] == "live" for s in stages)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return lines


def render(status: dict[str, Any], colour: bool) -> str:
    """The human screen. ``colour``: ANSI colours for the states (a terminal only)."""
    def paint(text: str, ok: bool | None) -> str:
        if not colour or ok is None:
            return text
        return f"\x1b[{32 if ok else 31}m{text}\x1b[0m"

    stage_rows = []
    for s in status["stages"]:
        state = s["active_state"]
        active = "NONE" if s["active"] is None else (
            s["active"] if state == "live" else f"{s['active']} ({state})")
        stage_rows.append([
            s["stage"], active, ",".join(s["standbys"]) or "-",
            "-" if s["epoch"] is None else str(s["epoch"]),
            "-" if s["lag_entries"] is None else f"{s['lag_entries']} / "
                                                   f"{_duration(s['lag_seconds'])}",
            _duration(s["last_commit_age_s"]), _duration(s["snapshot_covers_age_s"]),
            f"{s['in_length']} / {s['out_length']}", _duration(s["out_oldest_age_s"])])
    lines = _table(["STAGE", "ACTIVE", "STANDBY", "EPOCH", "LAG", "LAST COMMIT", "SNAPSHOT",
                    "IN / OUT", "OUT KEEPS"], stage_rows)
    # Colour after alignment, so escape codes do not skew the columns.
    for i, s in enumerate(status["stages"], start=1):
        if s["active_state"] != "live":
            lines[i] = paint(lines[i], False)
    service_rows = [[r["service"], r["instance"], r["host"], str(r["pid"]),
                     _duration(r["uptime_s"]), r["state"],
                     " ".join(f"{k}={v}" for k, v in sorted(r["urls"].items())) or "-"]
                    for r in status["services"]]
    out = lines + [""]
    if service_rows:
        svc = _table(["SERVICE", "INSTANCE", "HOST", "PID", "UPTIME", "STATE", "URLS"],
                     service_rows)
        for i, r in enumerate(status["services"], start=1):
            if r["state"] != "live":
                svc[i] = paint(svc[i], False)
        out += svc
    else:
        out.append("no service has registered (none running, or they predate registration)")
    missing = [s["stage"] for s in status["stages"] if s["active_state"] != "live"]
    out += ["", paint("every stage has a live active engine", True) if not missing else
            paint(f"no live active engine for: {', '.join(missing)}", False)]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = _client(config, url)
    try:
        status = collect(client, config)
    except (redis.RedisError, OSError) as exc:
        print(f"streamex status: cannot read Redis at {display_url(url)}: {exc}",
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.close()
    if args.json:
        print(json.dumps(status))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print(render(status, colour))
    return EXIT_OK if status["ok"] else EXIT_NO_ENGINE
