"""Helpers for the web-page tests: headless Chromium, a live exchange, protocol clients.

Everything here talks over real loopback sockets: ``streamex up`` runs as a
child process, the page runs in Debian's Chromium driven by Playwright, and
the order-entry and feed clients are plain websocket clients written against
PROTOCOL.md (not the project's SDK), so the page is checked against the
contract, not against another client.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
from timing import scaled
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

from contract.signing import sign
from marketdata.http_static import process_request
from streamex.up import DEMO_ACCOUNTS

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = scaled(40.0)


def require_chromium() -> str:
    """The Chromium binary; fails the test (never skips) with the fix when it is missing."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(
            f"Chromium is missing at {CHROMIUM_PATH}: the web-page tests need Debian's "
            "`chromium` package (apt-get install -y chromium)",
            pytrace=False,
        )
    return CHROMIUM_PATH


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:``port`` now (as ``streamex up`` checks it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def artifacts_dir(fallback: Path) -> Path:
    """``$STREAMEX_ARTIFACTS`` when set (CI keeps it), else ``fallback``."""
    path = Path(os.environ.get("STREAMEX_ARTIFACTS") or fallback)
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             detail: Callable[[], object] | None = None) -> Any:
    """Poll ``predicate`` every 20 ms until it returns a truthy value; fail after ``timeout``
    times the suite's scale (``tests/timing.py``), with ``detail()`` in the message to show
    what was seen instead."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; seen: {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(0.02)


# -- the exchange ---------------------------------------------------------------------


@dataclass
class Exchange:
    """A running ``python -m streamex up`` and what its banner said."""

    proc: subprocess.Popen[str]
    gateway_url: str
    marketdata_url: str
    page_url: str
    accounts: dict[str, tuple[str, str]]
    """account id -> (api_key, secret), parsed from the banner."""
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=500))
    data_dir: Path | None = None
    drainer: threading.Thread | None = None
    api_url: str | None = None
    """The REST service's base URL (``http://127.0.0.1:<port>``), when ``up`` runs one."""

    def log_tail(self) -> str:
        return "".join(self.output)

    def stop(self, kill: bool = False) -> None:
        """Stop ``streamex up`` and wait for it: Ctrl-C (SIGINT, the services and engines
        stop in order), or with ``kill`` a SIGKILL, as a crash would (its children get
        SIGTERM by PDEATHSIG). Idempotent."""
        proc = self.proc
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.drainer is not None:
            # The pipe closes once the last child holding it has gone.
            self.drainer.join(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


_ACCOUNT_LINE = re.compile(r"^\s+(\S+): api_key=(\S+) secret=(\S+)(?: funded .*)?\s*$")


@contextlib.contextmanager
def running_exchange(data_dir: Path, config: str | None = None) -> Iterator[Exchange]:
    """Start ``streamex up`` on free ports (with the TOML ``config`` text, if any: e.g.
    markets with fees, or the risk stage off), wait for its banner, stop it afterwards."""
    exchange = start_exchange(data_dir, free_port(), free_port(), config)
    try:
        yield exchange
    finally:
        exchange.stop()


def _up_takes(option: str) -> bool:
    """Whether ``streamex up`` has ``option`` (e.g. ``--api-port``, with the REST service)."""
    import argparse

    from streamex import up

    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    return option in parser._option_string_actions


def start_exchange(data_dir: Path, gw_port: int, md_port: int,
                   config: str | None = None, api_port: int | None = None) -> Exchange:
    """Start ``streamex up`` on these ports with ``data_dir`` and wait for its banner.

    ``config``: TOML text written to ``data_dir/streamex.toml`` and passed as
    ``--config`` (without it: the built-in markets, the risk stage on). Without
    ``[[accounts]]`` in it, ``up`` still makes (and funds) the demo accounts.

    Its output is drained by a thread for the whole run (the children share
    the pipe); the last lines are kept for failure messages. The caller stops
    it (:meth:`Exchange.stop`); a start that fails stops it here. The REST service (when
    ``up`` runs one) listens on ``api_port``, by default a free port, so that several
    exchanges can run at once.
    """
    argv = [sys.executable, "-m", "streamex", "up", "--gateway-port", str(gw_port),
            "--marketdata-port", str(md_port), "--data-dir", str(data_dir)]
    api_url = None
    if _up_takes("--api-port"):
        api_port = free_port() if api_port is None else api_port
        argv += ["--api-port", str(api_port)]
        api_url = f"http://127.0.0.1:{api_port}"
    if config is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = data_dir / "streamex.toml"
        config_path.write_text(config)
        argv += ["--config", str(config_path)]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    output: collections.deque[str] = collections.deque(maxlen=500)

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    drainer = threading.Thread(target=drain, daemon=True, name="streamex-up-output")
    drainer.start()
    exchange = Exchange(proc, f"ws://127.0.0.1:{gw_port}/", f"ws://127.0.0.1:{md_port}/",
                        f"http://127.0.0.1:{md_port}/", {}, output, data_dir, drainer,
                        api_url)
    try:
        banner: list[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(line.startswith("Press Ctrl-C") for line in banner):
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError("`streamex up` gave no banner:\n" + "".join(output))
            banner.append(line)
        text = "".join(banner)
        if "streamex is up" not in text:
            raise AssertionError("`streamex up` did not come up:\n" + "".join(output))
        accounts = {m[1]: (m[2], m[3]) for line in banner if (m := _ACCOUNT_LINE.match(line))}
        if len(accounts) < 2:
            raise AssertionError("no demo accounts in the banner:\n" + text)
    except BaseException:
        exchange.stop()
        raise
    exchange.accounts.update(accounts)
    return exchange


class RestartableExchange:
    """One ``streamex up`` at a time on two fixed ports, so that a test can stop the
    exchange and start it again where the page and its clients expect it.

    :meth:`start` with the data directory of the previous run restarts the same
    exchange (its book and orders come back from the AOF); with a new directory
    it starts a fresh, empty one, by default with the previous run's demo
    accounts (so a page that was logged on can log on again).
    """

    def __init__(self, data_dir: Path) -> None:
        self.gateway_port, self.marketdata_port = free_port(), free_port()
        while self.marketdata_port == self.gateway_port:
            self.marketdata_port = free_port()
        self.api_port = free_port()
        while self.api_port in (self.gateway_port, self.marketdata_port):
            self.api_port = free_port()
        self.data_dir = data_dir
        self.current: Exchange | None = None

    @property
    def exchange(self) -> Exchange:
        assert self.current is not None, "the exchange is not running"
        return self.current

    def start(self, data_dir: Path | None = None, keep_accounts: bool = True) -> Exchange:
        """Start ``streamex up`` (after :meth:`stop`) with ``data_dir`` (default: the last)."""
        assert self.current is None, "stop the running exchange first"
        if data_dir is not None and data_dir != self.data_dir:
            data_dir.mkdir(parents=True, exist_ok=True)
            saved = self.data_dir / DEMO_ACCOUNTS
            if keep_accounts and saved.exists() and not (data_dir / DEMO_ACCOUNTS).exists():
                shutil.copy2(saved, data_dir / DEMO_ACCOUNTS)
            self.data_dir = data_dir
        ports = (self.gateway_port, self.marketdata_port, self.api_port)
        wait_for(lambda: all(port_is_free(p) for p in ports), 30,
                 f"ports {ports} to be free for the exchange")
        self.current = start_exchange(self.data_dir, self.gateway_port, self.marketdata_port,
                                      api_port=self.api_port)
        return self.current

    def stop(self, kill: bool = False) -> None:
        """Stop the running exchange (see :meth:`Exchange.stop`) and wait for its ports."""
        if self.current is None:
            return
        self.current.stop(kill)
        self.current = None
        ports = (self.gateway_port, self.marketdata_port, self.api_port)
        wait_for(lambda: all(port_is_free(p) for p in ports), 30,
                 f"ports {ports} to be released by the stopped exchange")


@contextlib.contextmanager
def restartable_exchange(data_dir: Path) -> Iterator[RestartableExchange]:
    """A :class:`RestartableExchange`, started with ``data_dir``; stopped at the end."""
    control = RestartableExchange(data_dir)
    control.start()
    try:
        yield control
    finally:
        control.stop()


# -- protocol clients -------------------------------------------------------------------


class JsonSession:
    """A websocket client speaking PROTOCOL.md's request/reply; pushes are kept in order."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        # max_queue=None: unread pushes must not stop the reader (close would then wait 10 s).
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, open_timeout=10, max_queue=None))
        self.pushes: list[dict[str, Any]] = []
        self._next_id = 1

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, timeout: float) -> dict[str, Any]:
        msg: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return msg

    def call(self, method: str, params: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send one request and return its whole reply (``result`` or ``error``)."""
        request_id = self._next_id
        self._next_id += 1
        self.ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(max(0.01, deadline - time.monotonic()))
            if "channel" in msg:
                self.pushes.append(msg)
            elif msg.get("id") == request_id:
                return msg

    def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = self.call(method, params)
        assert "result" in reply, f"{method} {params} failed: {reply}"
        result: dict[str, Any] = reply["result"]
        return result

    def next_push(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
                  ) -> dict[str, Any]:
        """The first push (already received or arriving within ``timeout``) matching."""
        for i, msg in enumerate(self.pushes):
            if predicate(msg):
                del self.pushes[: i + 1]
                return msg
        self.pushes.clear()
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(max(0.01, deadline - time.monotonic()))
            if "channel" in msg and predicate(msg):
                return msg


class OrderSession(JsonSession):
    """A logged-on order-entry session."""

    def __init__(self, url: str, api_key: str, secret: str) -> None:
        super().__init__(url)
        ts = int(time.time() * 1000)
        self.account = self.result(
            "logon", {"api_key": api_key, "timestamp": ts, "signature": sign(secret, ts, api_key)}
        )["account"]

    def place(self, symbol: str, side: str, qty: str, price: str | None = None,
              **extra: Any) -> str:
        """Place a limit (with ``price``) or market order; return its order id."""
        params: dict[str, Any] = {"symbol": symbol, "side": side, "qty": qty,
                                  "type": "limit" if price is not None else "market", **extra}
        if price is not None:
            params["price"] = price
        order_id: str = self.result("order.place", params)["order_id"]
        return order_id

    def market_buy(self, symbol: str, quote_qty: str, **extra: Any) -> str:
        """Place a market buy spending at most ``quote_qty`` (fees included), as the risk
        stage wants it (PROTOCOL.md section A); return its order id."""
        params = {"symbol": symbol, "side": "buy", "type": "market", "quote_qty": quote_qty,
                  **extra}
        order_id: str = self.result("order.place", params)["order_id"]
        return order_id

    def balances(self) -> dict[str, tuple[str, str]]:
        """``account.balances``: asset -> (available, held)."""
        return {b["asset"]: (b["available"], b["held"])
                for b in self.result("account.balances", {})["balances"]}

    def report(self, order_id: str, exec_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the execution report of ``order_id`` with ``exec_type``."""
        push = self.next_push(lambda m: m.get("channel") == "executions"
                              and m["data"]["order_id"] == order_id
                              and m["data"]["exec_type"] == exec_type, timeout)
        data: dict[str, Any] = push["data"]
        return data


class FeedBook:
    """The feed's book for one market as an independent client sees it (for comparison);
    :attr:`trades` are the trades snapshot's (the last ones before subscribing) and then
    every trade since, oldest first."""

    def __init__(self, url: str, symbol: str, depth: int = 25) -> None:
        self.session = JsonSession(url)
        self.symbol = symbol
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = -1
        self.trades: list[dict[str, Any]] = []
        self.session.result("subscribe", {"channel": "book", "symbol": symbol, "depth": depth})
        self.session.result("subscribe", {"channel": "trades", "symbol": symbol})

    def close(self) -> None:
        self.session.close()

    def pump(self, timeout: float = 0.05) -> None:
        """Apply every message that arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        pending, self.session.pushes = self.session.pushes, []
        for msg in pending:
            self._apply(msg)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                msg = self.session._recv(left)
            except TimeoutError:
                return
            self._apply(msg)

    def _apply(self, msg: dict[str, Any]) -> None:
        if msg.get("channel") == "trades":
            if msg["type"] == "snapshot":  # the last trades before subscribing
                self.trades = list(msg["data"])
            else:
                self.trades.extend(msg["data"])
        if msg.get("channel") != "book":
            return
        if msg["type"] == "snapshot":
            self.bids = dict(msg["bids"])
            self.asks = dict(msg["asks"])
        else:
            assert msg["prev_seq"] == self.seq, "the test's own feed client saw a gap"
            for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
                for price, qty in levels:
                    if qty == "0":
                        side.pop(price, None)
                    else:
                        side[price] = qty
        self.seq = msg["seq"]

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` bids and asks, best first, as (price, qty)."""
        bids = sorted(self.bids.items(), key=lambda lv: -float(lv[0]))[:n]
        asks = sorted(self.asks.items(), key=lambda lv: float(lv[0]))[:n]
        return bids, asks


# -- a scripted feed peer (for the client-side resync logic) ---------------------------


class ScriptedFeed:
    """A websocket server on 127.0.0.1 that serves the page (http_static) and lets a
    test play the market-data side of PROTOCOL.md by hand: it answers ``markets``,
    ``subscribe`` and ``unsubscribe`` itself and records every request; the test
    sends the pushes (snapshots, updates, bad checksums, gaps) and closes sockets.
    """

    def __init__(self, markets: list[dict[str, str]]) -> None:
        self.markets = markets
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connections: queue.Queue[ServerConnection] = queue.Queue()
        self.current: ServerConnection | None = None
        self.server: Server = serve(self._handle, "127.0.0.1", 0,
                                    process_request=process_request)  # type: ignore[arg-type]
        self.port = self.server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self._thread.join(timeout=5)

    def _handle(self, ws: ServerConnection) -> None:
        self.current = ws
        self.connections.put(ws)
        for frame in ws:
            msg = json.loads(frame)
            method = msg.get("method")
            if method == "markets":
                result: dict[str, Any] = {"markets": self.markets}
            elif method == "subscribe":
                result = {"subscribed": msg["params"]}
            elif method == "unsubscribe":
                result = {"unsubscribed": msg["params"]}
            else:
                result = {}
            ws.send(json.dumps({"id": msg.get("id"), "result": result}))
            self.requests.put(msg)

    def send(self, msg: dict[str, Any]) -> None:
        self.send_text(json.dumps(msg))

    def send_text(self, frame: str) -> None:
        assert self.current is not None
        self.current.send(frame)

    def expect_request(self, method: str, channel: str | None = None,
                       timeout: float = 10.0) -> dict[str, Any]:
        """The next recorded request with ``method`` (and ``channel``); skips others."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.requests.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the page sent no {method} {channel or ''}") from None
            if msg.get("method") == method and (
                    channel is None or msg.get("params", {}).get("channel") == channel):
                return msg
