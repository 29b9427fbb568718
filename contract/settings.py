"""The settings of every process: one typed tree, the configuration file's schema.

``streamex.config`` reads the TOML file into it (and writes it back); each
process takes the parts it needs (the engine ``EngineConfig``, the gateway
``Config``). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from contract.market import DEFAULT_MARKETS, Market


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine runner tuning (see ARCHITECTURE.md, "Commit and recovery")."""

    snapshot_every: int = 10_000
    """Write a snapshot after this many applied commands."""
    snapshot_interval_s: float = 30.0
    """... or after this many seconds with at least one new command."""
    batch_size: int = 512
    """XREADGROUP COUNT: most commands applied and committed together."""
    block_ms: int = 100
    """XREADGROUP BLOCK: longest wait for new commands."""
    lease_ms: int = 3000
    """Leader lease time; a standby takes over this long after a silent leader."""
    out_retention: int = 1_000_000
    """Approximate number of entries kept in each market's event stream."""


@dataclass(frozen=True, slots=True)
class Account:
    """A trading account: logon is an HMAC-SHA256 of the timestamp and key by ``secret``."""

    id: str
    api_key: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where Redis is; ``url`` None means: start an embedded server."""

    url: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Order-entry websocket listener."""

    host: str = "127.0.0.1"
    port: int = 8001


@dataclass(frozen=True, slots=True)
class MarketDataConfig:
    """Market-data websocket listener."""

    host: str = "127.0.0.1"
    port: int = 8002


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Gateway admission limits: token buckets (rate per second, burst) and backlog."""

    connection_rate: float = 1000.0
    connection_burst: int = 2000
    account_rate: float = 5000.0
    account_burst: int = 10_000
    max_backlog: int = 100_000
    """Most commands waiting unapplied in a market's stream before OVERLOADED."""


@dataclass(frozen=True)
class Config:
    """The whole configuration. Look markets up with :meth:`market`."""

    markets: tuple[Market, ...] = DEFAULT_MARKETS
    accounts: tuple[Account, ...] = ()
    redis: RedisConfig = field(default_factory=RedisConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    marketdata: MarketDataConfig = field(default_factory=MarketDataConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    markets_by_symbol: Mapping[str, Market] = field(
        init=False, repr=False, compare=False, hash=False
    )
    accounts_by_api_key: Mapping[str, Account] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        by_symbol = MappingProxyType({m.symbol: m for m in self.markets})
        by_key = MappingProxyType({a.api_key: a for a in self.accounts})
        object.__setattr__(self, "markets_by_symbol", by_symbol)
        object.__setattr__(self, "accounts_by_api_key", by_key)

    def market(self, symbol: str) -> Market:
        """The market listed as ``symbol``; raises ``KeyError`` if it is not listed. O(1)."""
        return self.markets_by_symbol[symbol]
