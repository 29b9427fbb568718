"""``streamex status [--json]``: one screen per deployment, read from Redis alone.

Per market and risk shard (``acct-K``):

- **active**: the engine named by the stage's lease (``sx:{S}:lease``), and
  whether it is ``live`` (its registration is refreshed), ``stale`` (its
  registration stopped refreshing), ``unregistered`` (no registration: it
  died and the lease has not expired yet, or it predates registration) or
  ``none`` (nobody holds the lease);
- **standbys**: live engine registrations that serve the stage but do not
  hold its lease;
- **epoch**: the fencing token (``sx:{S}:epoch``), incremented by every takeover;
- **lag**: entries of ``:in`` the ``engine`` group has not applied (never
  delivered plus delivered-not-committed, ``XINFO GROUPS``) and the age of the
  oldest of them (the same reads as ``streamex_engine_lag_*``);
- **last commit**: the age of the newest ``:out`` entry (one per commit);
- **snapshot**: ``current`` when the snapshot covers the last commit, else
  ``behind`` by the age of the oldest commit it does not cover (what a
  takeover replays; compare ``[engine] snapshot_interval_s``), ``none``
  when there is none; ``snapshot_input_id`` is the input entry it covers;
- **streams**: the lengths of ``:in`` and ``:out`` and the age of the oldest
  ``:out`` entry (``:out`` is trimmed to ``[engine] out_retention`` entries).

Per service (``ops.registry``): its instances, host, pid, uptime, URLs, and
whether each is ``live`` or ``stale`` (not refreshed for ``STALE_MS``); a
killed process disappears within ``TTL_MS``.

Exit codes: 0 when every stage has a live active engine, 1 when one has
none, 2 on bad arguments or an unreachable Redis. Colour only when stdout is
a terminal and ``NO_COLOR`` is unset. Works on one server and on a Redis
Cluster (found by ``[redis] cluster`` or by asking the server). Cost: one
SCAN and a GET per registration, then two pipelines over every stage.
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
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from contract.ids import parse_id
from contract.keys import MarketKeys
from contract.risk import decode_risk_snapshot, risk_keys
from contract.settings import Config
from contract.snapshot import decode_snapshot
from engine.metrics import lags
from ops.registry import STALE_MS, TTL_MS, Registration, read_registrations
from redisio.client import host_port, seed_kwargs
from streamex.config import ConfigError, display_url, service_config

EXIT_OK = 0
EXIT_NO_ENGINE = 1
EXIT_USAGE = 2
TIMEOUT_S = 5.0
"""Connect and per-call socket timeout: an unreachable Redis is an error, not a hang."""
LAG_WARN_S = 1.0
"""A stage whose oldest unapplied entry is older than this is shown in yellow."""
STAGE_SERVICE = {"market": "engine", "risk shard": "risk"}
"""Which service's registrations serve a stage of each kind."""

Client = redis.Redis | RedisCluster


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show every market's and risk shard's active engine, standbys, epoch, lag, last "
        "commit, snapshot and streams, and every running service's instances, read from "
        "Redis alone.")
    parser.epilog = (
        "exit status: 0 when every market and risk shard has a live active engine, 1 when "
        "one has none (no lease holder, or a holder whose registration is gone or stale), "
        "2 on bad arguments or when Redis cannot be read.")
    parser.add_argument("--config", help="TOML configuration file (default: built-in markets)")
    parser.add_argument("--redis-url", help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the same data")


def connect(config: Config, url: str) -> Client:
    """A client of the deployment's Redis: a cluster client when ``[redis] cluster`` says so
    or the server at ``url`` is a cluster node. Raises Redis errors."""
    seeds = [url, *(u for u in config.redis.urls if u != url)]
    options: dict[str, Any] = dict(socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    cluster = config.redis.cluster
    if not cluster and not url.startswith("unix:"):
        probe = redis.Redis.from_url(url, **options)
        try:
            cluster = int(probe.info("cluster").get("cluster_enabled", 0)) == 1
        finally:
            probe.close()
    if not cluster:
        return redis.Redis.from_url(url, **options)
    kw = seed_kwargs(seeds[0])
    tls = {k: v for k, v in kw.items() if k.startswith("ssl_")}
    nodes = [ClusterNode(*host_port(u)) for u in seeds]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, username=kw.get("username"),
                        password=kw.get("password"), ssl=bool(kw["ssl"]), **tls,
                        require_full_coverage=False, **options)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _age_s(entry_id: str | None, now_ms: float) -> float | None:
    """Seconds since the stream entry ``entry_id`` was added (its id's milliseconds)."""
    if not entry_id or entry_id == "0-0":
        return None
    return round(max(0.0, now_ms - parse_id(entry_id)[0]) / 1000, 3)


def _first_id(reply: Any) -> str | None:
    return _text(reply[0][0]) if reply else None


def _live(reg: Registration, now_ms: float) -> bool:
    return now_ms - reg.updated_ms <= STALE_MS


def _stages(config: Config) -> list[tuple[str, MarketKeys]]:
    """``(kind, keys)`` of every configured market, then of every risk shard."""
    stages = [("market", MarketKeys.of(m.symbol)) for m in config.markets]
    if config.risk.enabled:
        stages += [("risk shard", risk_keys(k)) for k in range(config.risk.shards)]
    return stages


def _snapshot_ids(blob: bytes | None, risk: bool) -> tuple[str, str] | None:
    """``(last input id, last :out id)`` the snapshot covers; None if none or unreadable."""
    if blob is None:
        return None
    try:
        snap = decode_risk_snapshot(blob) if risk else decode_snapshot(blob)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return snap.last_input_id, snap.last_out_id


def _stage_rows(client: Client, config: Config, regs: list[Registration],
                now_ms: float) -> list[dict[str, Any]]:
    stages = _stages(config)
    pipe = client.pipeline(transaction=False)
    for _, keys in stages:
        pipe.get(keys.lease)
        pipe.get(keys.epoch)
        pipe.xlen(keys.input)
        pipe.xlen(keys.output)
        pipe.xrevrange(keys.output, count=1)
        pipe.xrange(keys.output, count=1)
        pipe.get(keys.snap)
    replies = pipe.execute()
    lag = lags(client, [(keys.symbol, keys.input) for _, keys in stages])
    per_stage = [replies[i:i + 7] for i in range(0, len(replies), 7)]
    snaps = [_snapshot_ids(r[6], kind == "risk shard")
             for (kind, _), r in zip(stages, per_stage, strict=True)]
    # The oldest commit each snapshot does not cover (one more pipeline, for those behind).
    behind = [i for i, (snap, r) in enumerate(zip(snaps, per_stage, strict=True))
              if snap is not None and r[4] and _first_id(r[4]) != snap[1]]
    uncovered: dict[int, str | None] = {}
    if behind:
        pipe = client.pipeline(transaction=False)
        for i in behind:
            covered = snaps[i]
            assert covered is not None
            pipe.xrange(stages[i][1].output, min=f"({covered[1]}", count=1)
        uncovered = {i: _first_id(r) for i, r in zip(behind, pipe.execute(), strict=True)}
    rows = []
    for i, ((kind, keys), r) in enumerate(zip(stages, per_stage, strict=True)):
        lease, epoch, in_len, out_len, last_out, first_out, _ = r
        name = keys.symbol
        service = STAGE_SERVICE[kind]
        mine = {g.instance: g for g in regs if g.service == service}
        holder = _text(lease)
        holder_reg = mine.get(holder) if holder is not None else None
        if holder is None:
            state = "none"
        elif holder_reg is None:
            state = "unregistered"
        else:
            state = "live" if _live(holder_reg, now_ms) else "stale"
        standbys = sorted(g.instance for g in mine.values()
                          if name in g.stages and g.instance != holder and _live(g, now_ms))
        snap = snaps[i]
        if snap is None:
            snapshot = "none"
            snapshot_behind = None
        elif i in uncovered:
            snapshot = "behind"
            snapshot_behind = _age_s(uncovered[i], now_ms)
        else:
            snapshot = "current"
            snapshot_behind = 0.0
        stage_lag = lag.get(name)
        node = None
        if isinstance(client, RedisCluster):
            found = client.get_node_from_key(keys.input)  # type: ignore[no-untyped-call]
            node = None if found is None else f"{found.host}:{found.port}"
        rows.append({
            "stage": name, "kind": kind, "node": node,
            "active": holder, "active_state": state,
            "active_host": holder_reg.host if holder_reg else None,
            "active_pid": holder_reg.pid if holder_reg else None,
            "standbys": standbys, "ok": state == "live",
            "epoch": int(epoch) if epoch is not None else None,
            "lag_entries": stage_lag.entries if stage_lag else None,
            "lag_seconds": round(stage_lag.seconds, 3) if stage_lag else None,
            "last_commit_age_s": _age_s(_first_id(last_out), now_ms),
            "snapshot": snapshot,
            "snapshot_input_id": snap[0] if snap else None,
            "snapshot_covers_age_s": _age_s(snap[0], now_ms) if snap else None,
            "snapshot_behind_s": snapshot_behind,
            "in_length": in_len, "out_length": out_len,
            "out_oldest_age_s": _age_s(_first_id(first_out), now_ms),
            "out_retention": config.engine.out_retention,
        })
    return rows


def _service_rows(regs: list[Registration], now_ms: float) -> list[dict[str, Any]]:
    return [{
        "service": r.service, "instance": r.instance, "host": r.host, "pid": r.pid,
        "uptime_s": round(max(0.0, now_ms - r.started_ms) / 1000, 1),
        "state": "live" if _live(r, now_ms) else "stale",
        "updated_age_s": round(max(0.0, now_ms - r.updated_ms) / 1000, 1),
        "urls": r.urls, "stages": r.stages, "owned": r.owned,
    } for r in regs]


PROBLEM = {
    "none": "no engine holds the lease",
    "unregistered": "lease holder {active} is not registered (dead, or the lease has not "
                    "expired yet)",
    "stale": "lease holder {active} stopped refreshing its registration",
}


def collect(client: Client, config: Config, url: str = "") -> dict[str, Any]:
    """Everything the status shows, as plain data (what ``--json`` prints). Raises Redis
    errors."""
    regs = read_registrations(client)
    now_ms = time.time() * 1000
    stages = _stage_rows(client, config, regs, now_ms)
    problems = [f"{s['stage']}: {PROBLEM[s['active_state']].format(**s)}"
                for s in stages if not s["ok"]]
    return {"time_ms": int(now_ms), "redis": display_url(url) if url else None,
            "cluster": isinstance(client, RedisCluster),
            "stale_ms": STALE_MS, "ttl_ms": TTL_MS,
            "ok": not problems, "problems": problems,
            "stages": stages, "services": _service_rows(regs, now_ms)}


# -- the human screen ------------------------------------------------------------

GREEN, YELLOW, RED = 32, 33, 31


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _ago(seconds: float | None) -> str:
    return "-" if seconds is None else f"{_duration(seconds)} ago"


Cell = tuple[str, int | None]
"""A table cell: its text and its colour (None: plain)."""


def _table(header: list[str], rows: list[list[Cell]], colour: bool) -> list[str]:
    """Aligned columns, two spaces apart, indented by two; colour is added after padding so
    escape codes do not skew the columns."""
    widths = [max([len(h), *(len(r[i][0]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[Cell]) -> str:
        parts = []
        for (text, code), width in zip(cells, widths, strict=True):
            padded = text.ljust(width)
            if colour and code is not None:
                padded = f"\x1b[{code}m{text}\x1b[0m" + " " * (width - len(text))
            parts.append(padded)
        return ("  " + "  ".join(parts)).rstrip()

    return [line([(h, None) for h in header]), *(line(r) for r in rows)]


def _stage_cells(s: dict[str, Any]) -> list[Cell]:
    state = s["active_state"]
    if state == "none":
        active: Cell = ("NONE", RED)
    elif state == "live":
        active = (s["active"], GREEN)
    else:
        active = (f"{s['active']} ({state})", RED)
    lagging = s["lag_seconds"] is not None and s["lag_seconds"] >= LAG_WARN_S
    if s["snapshot"] == "none":
        snapshot: Cell = ("none", None)
    elif s["snapshot"] == "current":
        snapshot = ("current", None)
    else:
        snapshot = (f"behind {_duration(s['snapshot_behind_s'])}", None)
    cells: list[Cell] = [(s["stage"], None)]
    if s["node"] is not None:
        cells.append((s["node"], None))
    return cells + [
        active, (", ".join(s["standbys"]) or "-", None),
        ("-" if s["epoch"] is None else str(s["epoch"]), None),
        ("-" if s["lag_entries"] is None else str(s["lag_entries"]),
         YELLOW if lagging else None),
        (_duration(s["lag_seconds"]) if s["lag_entries"] else "-",
         YELLOW if lagging else None),
        (_ago(s["last_commit_age_s"]), None), snapshot,
        (str(s["in_length"]), None), (str(s["out_length"]), None),
        (_duration(s["out_oldest_age_s"]), None)]


def _service_cells(r: dict[str, Any]) -> list[Cell]:
    live = r["state"] == "live"
    state = "live" if live else f"stale ({_duration(r['updated_age_s'])})"
    if r["stages"]:
        owned = set(r["owned"])
        stages = ", ".join(s + ("*" if s in owned else "") for s in r["stages"])
    else:
        stages = "-"
    urls = " ".join(f"{k}={v}" for k, v in sorted(r["urls"].items())) or "-"
    return [(r["service"], None), (r["instance"], None), (state, GREEN if live else YELLOW),
            (r["host"] or "-", None), (str(r["pid"] or "-"), None),
            (_duration(r["uptime_s"]), None), (stages, None), (urls, None)]


def render(status: dict[str, Any], colour: bool) -> str:
    """The human screen. ``colour``: ANSI colours for the states (a terminal only)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status["time_ms"] / 1000))
    where = status["redis"] or "Redis"
    kind = " (cluster)" if status["cluster"] else ""
    out = [f"streamex status of {where}{kind} at {when}", "", "Markets and risk shards"]
    stages = status["stages"]
    header = ["STAGE", *(["NODE"] if status["cluster"] else []), "ACTIVE", "STANDBY",
              "EPOCH", "LAG", "OLDEST", "LAST COMMIT", "SNAPSHOT", "IN", "OUT", "OUT SPAN"]
    out += _table(header, [_stage_cells(s) for s in stages], colour)
    if stages:
        out += ["  LAG: input entries not yet applied; OLDEST: age of the first of them",
                "  SNAPSHOT behind: age of the oldest commit a takeover would replay",
                f"  OUT SPAN: age of the oldest :out entry (:out keeps "
                f"{stages[0]['out_retention']} entries, [engine] out_retention)"]
    out += ["", "Services"]
    if status["services"]:
        out += _table(["SERVICE", "INSTANCE", "STATE", "HOST", "PID", "UPTIME",
                       "STAGES (*active)", "URLS"],
                      [_service_cells(r) for r in status["services"]], colour)
    else:
        out.append("  none registered (none running, or they predate registration)")
    out.append("")
    if status["ok"]:
        verdict = "OK: every market and risk shard has a live active engine"
        out.append(f"\x1b[{GREEN}m{verdict}\x1b[0m" if colour else verdict)
    else:
        for problem in ["NOT OK: no live active engine", *status["problems"]]:
            text = problem if problem.startswith("NOT OK") else f"  {problem}"
            out.append(f"\x1b[{RED}m{text}\x1b[0m" if colour else text)
    return "\n".join(out)


def _use_colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def run(args: argparse.Namespace) -> int:
    try:
        config, url = service_config(args.config, args.redis_url)
    except ConfigError as exc:
        print(f"streamex status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client: Client | None = None
    try:
        client = connect(config, url)
        status = collect(client, config, url)
    except (redis.RedisError, RedisClusterException, OSError, ValueError) as exc:
        print(f"streamex status: cannot read Redis at {display_url(url)}: {exc}",
              file=sys.stderr)
        return EXIT_USAGE
    finally:
        if client is not None:
            client.close()
    if args.json:
        print(json.dumps(status))
    else:
        print(render(status, _use_colour()))
    return EXIT_OK if status["ok"] else EXIT_NO_ENGINE
