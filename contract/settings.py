"""The settings of every process: one typed tree, the configuration file's schema.

``streamex.config`` decodes the TOML file into it (and writes it back); each
process takes the parts it needs (the engine ``EngineConfig``, the gateway
``Config``). No I/O.

Each setting is one annotated line: its type, constraints (``msgspec.Meta``)
and default. Decoding checks the constraints and names the field of any
mistake; building a struct directly does not (tests may use port 0), but the
cross-field rules in ``__post_init__`` hold either way, raising ``ValueError``
whose message starts with the field's name.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal

import msgspec

from contract.market import DEFAULT_MARKETS, Market, parse_units

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
"""A positive count that fits in a signed 32-bit integer."""
PositiveFloat = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]
"""A positive finite number (the upper bound rejects infinity); an int is accepted."""
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class EngineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Engine runner tuning (see ARCHITECTURE.md, "Commit and recovery")."""

    snapshot_every: Count = 10_000
    """Write a snapshot after this many applied commands."""
    snapshot_interval_s: PositiveFloat = 30.0
    """... or after this many seconds with at least one new command."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 512
    """XREADGROUP COUNT: most commands applied and committed together."""
    block_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 100
    """XREADGROUP BLOCK: longest wait for new commands."""
    lease_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] = 3000
    """Leader lease time; a standby takes over this long after a silent leader."""
    out_retention: Count = 1_000_000
    """Approximate number of entries kept in each market's event stream."""
    metrics_host: NonEmptyStr = "127.0.0.1"
    """Where an engine process serves /metrics, /healthz and /readyz ..."""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """... on this port (0: any free one; several engine processes of ``streamex up`` take
    consecutive ports from it). None: no metrics listener (``streamex up`` then picks free
    ports)."""

    def __post_init__(self) -> None:
        if self.lease_ms <= self.block_ms:
            raise ValueError("lease_ms: must be greater than engine.block_ms")


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A trading account: logon is an HMAC-SHA256 of the timestamp and key by ``secret``.

    ``balances`` (asset -> decimal amount) are deposited once when the risk
    stage first sees the account (refs ``initial:<account>:<asset>``).
    """

    id: NonEmptyStr
    api_key: NonEmptyStr
    secret: NonEmptyStr
    balances: dict[str, str] = {}

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Account(id={self.id!r}, api_key={self.api_key!r})"


class AssetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An asset's unit: amounts are integers of ``10**-decimals``."""

    asset: Annotated[str, msgspec.Meta(pattern="^[A-Z0-9]{1,12}$")]
    decimals: Annotated[int, msgspec.Meta(ge=0, le=18)]


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The risk stage (balances, holds, fees; ARCHITECTURE.md, "The risk stage")."""

    enabled: bool = True
    """False: no balances, orders go straight to the markets (a venue whose members do
    their own risk checks)."""
    shards: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    """Accounts are spread over this many risk engines: crc32(account) mod shards."""
    fee_account: NonEmptyStr = "fees"
    """Account credited with every fee."""
    metrics_host: NonEmptyStr = "127.0.0.1"
    """Where a risk engine process serves /metrics, /healthz and /readyz ..."""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """... on this port (as ``[engine] metrics_port``)."""


Durability = Literal["async", "replicated"]


class RedisConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where Redis is; ``url`` None (and no ``urls``) means: start an embedded server."""

    url: NonEmptyStr | None = None
    password_file: NonEmptyStr | None = None
    """Read the password from this file (e.g. a Docker secret) rather than from ``url``."""
    cluster: bool = False
    """``url`` and ``urls`` are seed nodes of a Redis Cluster."""
    urls: tuple[NonEmptyStr, ...] = ()
    """More seed nodes of the cluster (any reachable one is enough to find the rest)."""
    durability: Durability = "async"
    """``replicated``: an order is ``received`` only once a replica holds it, and the
    services publish only what a replica holds (cluster only; README, Durability)."""
    wait_timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=60_000)] = 1000
    """With ``replicated``: how long ``received`` waits for a replica before giving up."""

    def __post_init__(self) -> None:
        for i, url in enumerate((self.url, *self.urls)):
            if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
                where = "url" if self.url is not None and i == 0 else f"urls[{i - 1}]"
                raise ValueError(f"{where}: must start with redis://, rediss:// or unix://")
        if self.urls and not self.cluster:
            raise ValueError("urls: only for a cluster (set cluster = true)")
        if self.durability == "replicated" and not self.cluster:
            raise ValueError("durability: replicated needs cluster = true")

    @property
    def seeds(self) -> tuple[str, ...]:
        """Every URL given: ``url`` first, then ``urls``."""
        return ((self.url,) if self.url is not None else ()) + self.urls


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Order-entry websocket listener."""

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8001


class MarketDataConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Market-data websocket listener."""

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8002
    request_rate: PositiveFloat = 1000.0
    """Requests per second per connection (token bucket) ..."""
    request_burst: Count = 2000
    """... and its burst; beyond them RATE_LIMITED."""


class HistoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The history database ``streamex history`` writes and the REST API reads."""

    url: NonEmptyStr | None = None
    """``sqlite:///<path>`` or ``postgresql://...``; None: ``history.sqlite3`` in the data
    directory of ``streamex up``."""
    batch_entries: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2000
    """Most stream entries written in one transaction."""
    read_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50
    """Least time between two reads of a stream once it is caught up: what the engines
    commit meanwhile is read and written in one transaction (far fewer wake-ups and
    transactions at low rates, for up to this much more lag; a REST query of one's own
    orders or trades waits for the history to reach them). 0: read at once."""
    metrics_host: NonEmptyStr = "127.0.0.1"
    """Where ``streamex history`` serves /metrics, /healthz and /readyz ..."""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """... on this port (as ``[engine] metrics_port``)."""

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(
                ("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("url: must start with sqlite:///, postgresql:// or postgres://")


class ApiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The Binance-compatible REST listener (PROTOCOL.md, section D)."""

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8003
    max_recv_window_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] = 60_000
    """Largest ``recvWindow`` accepted (Binance's limit); the default window is 5,000 ms."""


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Prometheus metrics and the health endpoints of every service."""

    enabled: bool = True
    """False: no /metrics (and no per-request metric updates) anywhere; /healthz and
    /readyz still answer where a service has its own HTTP port."""


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gateway admission limits: token buckets (rate per second, burst) and backlog."""

    connection_rate: PositiveFloat = 1000.0
    connection_burst: Count = 2000
    account_rate: PositiveFloat = 5000.0
    account_burst: Count = 10_000
    max_backlog: Count = 100_000
    """Most commands waiting unapplied in a market's stream before OVERLOADED."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, dict=True):
    """The whole configuration. Look markets up with :meth:`market`.

    Markets need at least one entry and unique symbols; accounts unique ids
    and api_keys.
    """

    accounts_file: NonEmptyStr | None = None
    """A TOML file of more ``[[accounts]]`` (keeps the secrets out of this file)."""
    markets: tuple[Market, ...] = DEFAULT_MARKETS
    accounts: tuple[Account, ...] = ()
    redis: RedisConfig = RedisConfig()
    gateway: GatewayConfig = GatewayConfig()
    marketdata: MarketDataConfig = MarketDataConfig()
    engine: EngineConfig = EngineConfig()
    limits: LimitsConfig = LimitsConfig()
    assets: tuple[AssetConfig, ...] = ()
    risk: RiskConfig = RiskConfig()
    history: HistoryConfig = HistoryConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()

    # Derived at construction (kept in the instance __dict__: never encoded, not compared).
    markets_by_symbol: ClassVar[Mapping[str, Market]]
    accounts_by_api_key: ClassVar[Mapping[str, Account]]

    def __post_init__(self) -> None:
        if not self.markets:
            raise ValueError("markets: must list at least one market")
        msgspec.structs.force_setattr(self, "markets", _with_asset_units(self.markets,
                                                                         self.assets))
        by_symbol: dict[str, Market] = {}
        for i, market in enumerate(self.markets):
            if market.symbol in by_symbol:
                raise ValueError(f"markets[{i}].symbol: duplicate market {market.symbol!r}")
            by_symbol[market.symbol] = market
        ids: set[str] = set()
        by_key: dict[str, Account] = {}
        for i, account in enumerate(self.accounts):
            if account.id in ids:
                raise ValueError(f"accounts[{i}].id: duplicate account id {account.id!r}")
            if account.api_key in by_key:
                raise ValueError(f"accounts[{i}].api_key: duplicate api_key")
            ids.add(account.id)
            by_key[account.api_key] = account
            units = self.asset_units
            for asset, amount in account.balances.items():
                if asset not in units:
                    raise ValueError(f"accounts[{i}].balances.{asset}: no market trades "
                                     f"{asset!r}")
                try:
                    parse_units(amount, units[asset])
                except ValueError as exc:
                    raise ValueError(f"accounts[{i}].balances.{asset}: {exc}") from None
        self.__dict__["markets_by_symbol"] = MappingProxyType(by_symbol)
        self.__dict__["accounts_by_api_key"] = MappingProxyType(by_key)

    @property
    def asset_units(self) -> dict[str, int]:
        """Decimals of every asset the markets trade. O(markets)."""
        units: dict[str, int] = {}
        for m in self.markets:
            units[m.base] = m.base_units
            units[m.quote] = m.quote_units
        return units

    def market(self, symbol: str) -> Market:
        """The market listed as ``symbol``; raises ``KeyError`` if it is not listed. O(1)."""
        return self.markets_by_symbol[symbol]


def _with_asset_units(markets: tuple[Market, ...],
                      assets: tuple[AssetConfig, ...]) -> tuple[Market, ...]:
    """``markets`` with one unit per asset: its ``[[assets]]`` row, else the finest any
    of its markets needs or names (PROTOCOL.md, section A). Raises ``ValueError`` for a row too
    coarse for a market's lot or notional, or a duplicate row."""
    rows: dict[str, int] = {}
    for i, a in enumerate(assets):
        if a.asset in rows:
            raise ValueError(f"assets[{i}].asset: duplicate asset {a.asset!r}")
        rows[a.asset] = a.decimals
    need: dict[str, int] = {}
    for m in markets:
        need[m.base] = max(need.get(m.base, 0), m.base_units)
        need[m.quote] = max(need.get(m.quote, 0), m.quote_units)
    units = {asset: rows.get(asset, n) for asset, n in need.items()}
    out = []
    for i, m in enumerate(markets):
        if (m.base_units, m.quote_units) == (units[m.base], units[m.quote]):
            out.append(m)
            continue
        try:
            out.append(msgspec.structs.replace(m, base_decimals=units[m.base],
                                               quote_decimals=units[m.quote]))
        except ValueError as exc:
            raise ValueError(f"markets[{i}] with [[assets]]: {exc}") from None
    return tuple(out)
