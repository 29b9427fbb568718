"""Helpers for the REST tests: a whole exchange of real processes, and Binance clients of it.

:class:`Exchange` starts, on a fresh Redis, ``streamex engine`` and ``streamex risk``
(``gateway_helpers.EngineGroup``), ``streamex history`` writing a SQLite database, and
``streamex api`` reading it, all as child processes with this module's configuration
(until ``streamex up`` starts the REST service and history itself). Each test takes
markets of its own (:data:`MARKETS` lists several), so tests sharing one exchange do
not see each other's books.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any

import ccxt
import requests
from gateway_helpers import EngineGroup
from msgspec.structs import replace
from streamex_process import StreamexProcess
from timing import TIMEOUT_S, scaled, wait_until
from up_helpers import Up

from contract.market import Market
from contract.settings import Account, Config, LimitsConfig
from streamex.config import dump_config
from streamex.redis_server import RedisServer

FUNDS = {"USD": "1000000", "BTC": "100", "ETH": "1000", "SOL": "10000", "ADA": "100000",
         "DOT": "10000", "XRP": "100000"}


def _account(name: str, funds: dict[str, str] | None = None) -> Account:
    return Account(name, f"{name}-key-0123456789", f"{name}-secret-0123456789abcdef",
                   balances=FUNDS if funds is None else funds)


ANN, BEN, CAT, DAN, EVE, FAY, GUS, HAL = (
    _account(n) for n in ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal"))
POOR = _account("poor", {"USD": "100", "BTC": "0.01"})
ACCOUNTS = (ANN, BEN, CAT, DAN, EVE, FAY, GUS, HAL, POOR)
"""Balances are shared by all markets: each test trades with accounts of its own."""

MAKER_FEE, TAKER_FEE = "0.001", "0.002"


def _market(base: str, fees: bool = True) -> Market:
    return Market(f"{base}-USD", base, "USD", "0.01", "0.0001", "0.0001", "1000", "0.01",
                  "1000000", maker_fee=MAKER_FEE if fees else "0",
                  taker_fee=TAKER_FEE if fees else "0", quote_decimals=6)


MARKETS = (_market("BTC"), _market("ETH"), _market("SOL"), _market("ADA"), _market("DOT"),
           _market("XRP", fees=False))
"""Every market: 0.01 tick, 0.0001 lot; USD with 6 decimals; 10/20 bps fees but XRP's."""


def make_config(markets: tuple[Market, ...] = MARKETS, **limits: Any) -> Config:
    """:data:`ACCOUNTS` on ``markets`` (funded in their assets), ``[limits]`` overrides."""
    assets = {a for m in markets for a in (m.base, m.quote)}
    accounts = tuple(replace(a, balances={k: v for k, v in a.balances.items() if k in assets})
                     for a in ACCOUNTS)
    return Config(accounts=accounts, markets=markets,
                  limits=LimitsConfig(**{"connection_rate": 100_000.0,
                                         "connection_burst": 100_000, **limits}))


class ApiProcess(StreamexProcess):
    """``streamex api`` with its URL from the ``event=listening`` line."""

    def wait_http(self) -> str:
        """The URL of this start's ``event=listening`` line (a restart logs a new one)."""
        pattern = re.compile(r"event=listening service=api url=(http://\S+)/")
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = pattern.search(self.log()[self._log_start:])
            if found:
                return found.group(1)
            if not self.running():
                raise AssertionError(f"api exited before listening:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"api did not listen in time:\n{self.log()}")
            time.sleep(0.02)


class Exchange:
    """Redis, engines, history and the REST service, each a real process.

    With ``up``, the exchange is a ``streamex up`` (its embedded Redis, an engine per
    market, the risk engine, gateway and market data) in ``directory``, run with this
    module's configuration (``--config``), and ``streamex history`` and ``streamex api``
    run next to it on up's Redis (until ``streamex up`` starts them itself).
    """

    def __init__(self, directory: Path, config: Config | None = None, *,
                 up: bool = False) -> None:
        self.directory = directory
        self.config = config or make_config()
        self.config_path = directory / "streamex.toml"
        self.config_path.write_text(dump_config(self.config))
        self.db_url = f"sqlite:///{directory / 'history.sqlite3'}"
        self.redis = RedisServer(data_dir=directory / "redis", die_with_parent=True)
        self.use_up = up
        self.up: Up | None = None
        self.redis_url = ""
        self.engines: EngineGroup | None = None
        self.history: StreamexProcess | None = None
        self.api: ApiProcess | None = None
        self.url = ""

    def start(self) -> Exchange:
        try:
            if self.use_up:
                self.up = Up(self.directory / "up-data", self.directory / "up.log",
                             extra=("--config", str(self.config_path)))
                url = self.up.redis_url
            else:
                self.redis.start()
                url = self.redis.url
                self.engines = EngineGroup(self.config_path, url,
                                           self.directory / "engine.log").start()
            self.redis_url = url
            common = ["--config", str(self.config_path), "--redis-url", url,
                      "--db", self.db_url]
            self.history = StreamexProcess(["history", *common],
                                           self.directory / "history.log").start()
            self.api = ApiProcess(["api", *common, "--port", "0"],
                                  self.directory / "api.log", timeout_s=scaled(40))
            self.api.start()
            self.url = self.api.wait_http()
            self.wait_funded()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_funded(self) -> None:
        """Until the risk stage has deposited every account's initial balances."""
        def funded() -> bool:
            for account in ACCOUNTS:
                balances = signed(self.url, account, "GET", "/api/v3/account", {}).json()
                if not any(b["free"] != "0.000000" for b in balances.get("balances", [])
                           if b["asset"] == "USD"):
                    return False
            return True
        wait_until(funded, TIMEOUT_S * 2, "the initial deposits")

    def restart_api(self) -> str:
        """Stop ``streamex api`` and start it again (its views rebuilt from the engines'
        snapshots and streams, nothing kept in memory); its new URL, also :attr:`url`."""
        assert self.api is not None
        assert self.api.stop() == 0, self.api.log()
        self.api.start()
        self.url = self.api.wait_http()
        return self.url

    def stop(self) -> None:
        for process in (self.api, self.history):
            if process is not None:
                process.stop()
        if self.engines is not None:
            self.engines.stop()
        if self.up is not None:
            code = self.up.stop()
            assert code == 0, self.up.log_path.read_text()
        self.redis.stop()

    def logs(self) -> str:
        return "".join(p.log() for p in (self.api, self.history) if p is not None)


def signed(base: str, account: Account, method: str, path: str, params: dict[str, Any],
           *, in_body: bool = False, session: requests.Session | None = None
           ) -> requests.Response:
    """A SIGNED request: ``timestamp`` added, HMAC-SHA256 of the query (or body)."""
    query = urllib.parse.urlencode({**params, "timestamp": int(time.time() * 1000)})
    signature = hmac.new(account.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    query += f"&signature={signature}"
    headers = {"X-MBX-APIKEY": account.api_key}
    http = session or requests
    if in_body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return http.request(method, f"{base}{path}", data=query, headers=headers, timeout=30)
    return http.request(method, f"{base}{path}?{query}", headers=headers, timeout=30)


class Binance:
    """A client written from Binance's public docs only (binance-spot-api-docs,
    ``rest-api.md``): SIGNED = lowercase hex HMAC-SHA256, keyed by the secret, of the
    query string followed by the form body, ``timestamp`` added, the key in
    ``X-MBX-APIKEY``. Close the sessions of :attr:`made` at the end."""

    made: list[Binance] = []

    def __init__(self, base: str, account: Account) -> None:
        Binance.made.append(self)
        self.base = base
        self.key = account.api_key
        self.secret = account.secret.encode()
        self.http = requests.Session()

    def public(self, path: str, **params: Any) -> Any:
        reply = self.http.get(self.base + path, params=params, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def call(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None) -> requests.Response:
        query = dict(query or {})
        if body is None:
            query["timestamp"] = int(time.time() * 1000)
        else:
            body = {**body, "timestamp": int(time.time() * 1000)}
        query_string = urllib.parse.urlencode(query)
        body_string = urllib.parse.urlencode(body) if body is not None else ""
        signature = hmac.new(self.secret, (query_string + body_string).encode(),
                             hashlib.sha256).hexdigest()
        headers = {"X-MBX-APIKEY": self.key}
        if body is None:
            url = f"{self.base}{path}?{query_string}&signature={signature}"
            return self.http.request(method, url, headers=headers, timeout=30)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        url = f"{self.base}{path}" + (f"?{query_string}" if query_string else "")
        return self.http.request(method, url, data=f"{body_string}&signature={signature}",
                                 headers=headers, timeout=30)

    def signed(self, method: str, path: str, **params: Any) -> Any:
        reply = self.call(method, path, params)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def order(self, **params: Any) -> Any:
        reply = self.call("POST", "/api/v3/order", body=params)
        assert reply.status_code == 200, reply.text
        return reply.json()


BINANCE_HOSTS = ("https://api.binance.com", "https://fapi.binance.com",
                 "https://dapi.binance.com", "https://eapi.binance.com",
                 "https://papi.binance.com")


def binance_client(base: str, account: Account) -> ccxt.binance:
    """ccxt's ``binance`` with every ``urls['api']`` entry pointed at ``base``.

    ``load_markets`` (ccxt 4.5.90, default options, with credentials) calls
    ``public`` (``/api/v3/exchangeInfo``), ``sapi`` (``capital/config/getall``,
    ``margin/allPairs``, ``margin/isolated/allPairs``), ``fapiPublic`` and
    ``dapiPublic`` (``exchangeInfo``); trading and account calls use ``private``.
    The other keys are pointed here too, so nothing can reach binance.com.
    """
    client = ccxt.binance({"apiKey": account.api_key, "secret": account.secret,
                           "enableRateLimit": False, "timeout": 30_000})
    api = client.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str):
            for host in BINANCE_HOSTS:
                if value.startswith(host):
                    api[key] = base + value[len(host):]
    return client
