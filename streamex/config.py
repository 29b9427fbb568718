"""streamex configuration: one TOML file read once at start-up.

``load_config(path)`` reads the file with :mod:`tomllib` and hands the table to
``parse_config``, which checks every field and builds frozen dataclasses. A
missing section means its defaults; ``load_config(None)`` means all defaults
(the two ``DEFAULT_MARKETS``, no accounts, an embedded Redis server).

Any mistake raises :class:`ConfigError` whose message starts with the field's
path, e.g. ``markets[1].tick_size: must be positive`` or
``gateway.port: must be an integer in 1..65535``. Unknown keys are mistakes
too, and types are exact: a port written as ``"8001"`` is rejected.

``dump_config(config)`` writes a Config back as TOML that loads to an equal
Config. Only ``parse_config`` validates; the dataclasses themselves accept whatever
they are given, so tests may build them directly (e.g. with port 0).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from contract.market import DEFAULT_MARKETS, Market
from contract.settings import (
    Account,
    Config,
    EngineConfig,
    GatewayConfig,
    LimitsConfig,
    MarketDataConfig,
    RedisConfig,
)


class ConfigError(ValueError):
    """A bad configuration; the message names the offending field's path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- loading ------------------------------------------------------------------


def load_config(path: str | Path | None) -> Config:
    """Read and check a TOML configuration file; ``None`` gives the defaults.

    Raises :class:`ConfigError` when the file cannot be read, is not valid
    TOML, or any field is wrong.
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data)


def dump_config(config: Config) -> str:
    """The TOML text of ``config``; ``parse_config(tomllib.loads(text)) == config``.

    Every section is written out in full (secrets included: keep the file
    private). O(markets + accounts).
    """
    lines: list[str] = []
    if config.redis.url is not None:
        lines += ["[redis]", f"url = {_toml_str(config.redis.url)}", ""]
    sections: tuple[tuple[str, Any], ...] = (
        ("gateway", config.gateway),
        ("marketdata", config.marketdata),
        ("engine", config.engine),
        ("limits", config.limits),
    )
    for name, section in sections:
        lines.append(f"[{name}]")
        for f in fields(section):
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    for market in config.markets:
        lines.append("[[markets]]")
        lines += [f"{key} = {_toml_str(value)}" for key, value in market.to_wire().items()]
        lines.append("")
    for account in config.accounts:
        lines.append("[[accounts]]")
        for key in ("id", "api_key", "secret"):
            lines.append(f"{key} = {_toml_str(getattr(account, key))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_str(value)
    if type(value) in (int, float):
        return repr(value)
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_str(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_MARKET_FIELDS = (
    "symbol",
    "base",
    "quote",
    "tick_size",
    "lot_size",
    "min_qty",
    "max_qty",
    "min_price",
    "max_price",
)
_SECTIONS = ("markets", "accounts", "redis", "gateway", "marketdata", "engine", "limits")


def service_config(path: str | Path | None, redis_url: str | None) -> tuple[Config, str]:
    """Configuration and Redis URL of a service process (engine, gateway, marketdata).

    ``redis_url`` (from ``--redis-url``) wins over ``[redis] url``; a service
    never starts an embedded server (``streamex up`` does). Raises
    ConfigError naming the field, or saying how to give a Redis URL.
    """
    config = load_config(path)
    url = redis_url or config.redis.url
    if not url:
        raise ConfigError("no Redis: pass --redis-url or set [redis] url in the config "
                          "(streamex up starts an embedded server)")
    return config, url


def parse_config(data: Mapping[str, Any]) -> Config:
    """Check a configuration table (as ``tomllib`` returns it) and build the Config."""
    _reject_unknown(data, _SECTIONS, "")
    return Config(
        markets=_markets(data["markets"]) if "markets" in data else DEFAULT_MARKETS,
        accounts=_accounts(data.get("accounts", [])),
        redis=_redis(_table(data, "redis")),
        gateway=_listener(_table(data, "gateway"), "gateway", GatewayConfig()),
        marketdata=_listener(_table(data, "marketdata"), "marketdata", MarketDataConfig()),
        engine=_engine(_table(data, "engine")),
        limits=_limits(_table(data, "limits")),
    )


def _reject_unknown(table: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (expected one of {', '.join(known)})")


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a table ([{name}])")
    return value


def _array_of_tables(value: object, name: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]])")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{name}[{i}]: must be a table")
    return value


def _string(table: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    if key not in table:
        if default is None:
            raise ConfigError(f"{path}: required")
        return default
    value = table[key]
    if type(value) is not str or not value:
        raise ConfigError(f"{path}: must be a non-empty string")
    return value


def _int(table: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        raise ConfigError(f"{path}: must be an integer in {lo}..{hi}")
    return value


def _positive_float(table: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = table.get(key, default)
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{path}: must be a positive number")
    return float(value)


def _markets(value: object) -> tuple[Market, ...]:
    tables = _array_of_tables(value, "markets")
    if not tables:
        raise ConfigError("markets: must list at least one market")
    markets: list[Market] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        prefix = f"markets[{i}]."
        _reject_unknown(table, _MARKET_FIELDS, prefix)
        args: dict[str, str] = {}
        for name in _MARKET_FIELDS:
            if name not in table:
                raise ConfigError(f"{prefix}{name}: required")
            if type(table[name]) is not str:
                raise ConfigError(f'{prefix}{name}: must be a string (write decimals as "0.01")')
            args[name] = table[name]
        try:
            market = Market(**args)
        except ValueError as exc:
            raise ConfigError(f"{prefix}{exc}") from None
        if market.symbol in seen:
            raise ConfigError(f"{prefix}symbol: duplicate market {market.symbol!r}")
        seen.add(market.symbol)
        markets.append(market)
    return tuple(markets)


def _accounts(value: object) -> tuple[Account, ...]:
    accounts: list[Account] = []
    ids: set[str] = set()
    keys: set[str] = set()
    for i, table in enumerate(_array_of_tables(value, "accounts")):
        prefix = f"accounts[{i}]."
        _reject_unknown(table, ("id", "api_key", "secret"), prefix)
        account = Account(
            id=_string(table, "id", prefix + "id"),
            api_key=_string(table, "api_key", prefix + "api_key"),
            secret=_string(table, "secret", prefix + "secret"),
        )
        if account.id in ids:
            raise ConfigError(f"{prefix}id: duplicate account id {account.id!r}")
        if account.api_key in keys:
            raise ConfigError(f"{prefix}api_key: duplicate api_key")
        ids.add(account.id)
        keys.add(account.api_key)
        accounts.append(account)
    return tuple(accounts)


def _redis(table: Mapping[str, Any]) -> RedisConfig:
    _reject_unknown(table, ("url",), "redis.")
    if "url" not in table:
        return RedisConfig()
    url = _string(table, "url", "redis.url")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis.url: must start with redis://, rediss:// or unix://")
    return RedisConfig(url=url)


_Listener = TypeVar("_Listener", GatewayConfig, MarketDataConfig)


def _listener(table: Mapping[str, Any], name: str, defaults: _Listener) -> _Listener:
    _reject_unknown(table, ("host", "port"), f"{name}.")
    return type(defaults)(
        host=_string(table, "host", f"{name}.host", defaults.host),
        port=_int(table, "port", f"{name}.port", defaults.port, 1, 65535),
    )


def _engine(table: Mapping[str, Any]) -> EngineConfig:
    d = EngineConfig()
    _reject_unknown(
        table,
        ("snapshot_every", "snapshot_interval_s", "batch_size", "block_ms", "lease_ms",
         "out_retention"),
        "engine.",
    )
    big = 2**31 - 1
    config = EngineConfig(
        snapshot_every=_int(table, "snapshot_every", "engine.snapshot_every",
                            d.snapshot_every, 1, big),
        snapshot_interval_s=_positive_float(table, "snapshot_interval_s",
                                            "engine.snapshot_interval_s", d.snapshot_interval_s),
        batch_size=_int(table, "batch_size", "engine.batch_size", d.batch_size, 1, 1_000_000),
        block_ms=_int(table, "block_ms", "engine.block_ms", d.block_ms, 1, 60_000),
        lease_ms=_int(table, "lease_ms", "engine.lease_ms", d.lease_ms, 1, 3_600_000),
        out_retention=_int(table, "out_retention", "engine.out_retention",
                           d.out_retention, 1, big),
    )
    if config.lease_ms <= config.block_ms:
        raise ConfigError("engine.lease_ms: must be greater than engine.block_ms")
    return config


def _limits(table: Mapping[str, Any]) -> LimitsConfig:
    d = LimitsConfig()
    _reject_unknown(
        table,
        ("connection_rate", "connection_burst", "account_rate", "account_burst", "max_backlog"),
        "limits.",
    )
    big = 2**31 - 1
    return LimitsConfig(
        connection_rate=_positive_float(table, "connection_rate", "limits.connection_rate",
                                        d.connection_rate),
        connection_burst=_int(table, "connection_burst", "limits.connection_burst",
                              d.connection_burst, 1, big),
        account_rate=_positive_float(table, "account_rate", "limits.account_rate",
                                     d.account_rate),
        account_burst=_int(table, "account_burst", "limits.account_burst",
                           d.account_burst, 1, big),
        max_backlog=_int(table, "max_backlog", "limits.max_backlog", d.max_backlog, 1, big),
    )
