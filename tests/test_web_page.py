"""The trading web page, in a real headless Chromium, against the real services.

Three layers:

* ``marketdata.http_static`` over real sockets: content types, caching,
  traversal refused, and a websocket handshake on ``/`` still opening the feed;
* the page's own logic (CRC32, book checksum, HMAC, decimals) compared with
  Python's zlib/hmac/hashlib and the feed's checksum, and its resync/reconnect
  behaviour against a scripted feed peer (gaps and bad checksums cannot be had
  from the real feed on demand);
* a person's session against ``python -m streamex up``: the book and trades of a
  seeded flow match an independent feed client, logon, limit order in open
  orders and in the ladder, cancel, a cross by another account showing in the
  tape and the execution log, error codes shown to the user, and the candle
  chart and 24-hour ticker fields made from real trades, across a restart.

Chromium missing is a failure with the fix in the message, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import threading
import time
import zlib
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    REPO_ROOT,
    Exchange,
    FeedBook,
    OrderSession,
    ScriptedFeed,
    artifacts_dir,
    free_port,
    require_chromium,
    restartable_exchange,
    running_exchange,
    wait_for,
)
from test_marketdata_history import wire_candles, wire_stats
from timing import scaled
from websockets.asyncio.server import ServerConnection, serve
from websockets.sync.client import connect

from contract.events import Trade
from contract.market import DEFAULT_MARKETS
from contract.market_data import checksum as feed_checksum
from marketdata.http_static import STATIC_DIR, process_request

# -- http_static over real sockets ----------------------------------------------------------


@contextlib.contextmanager
def static_server() -> Iterator[int]:
    """The asyncio websockets server with ``process_request=http_static.process_request``
    and an echo handler, on a loop in its own thread; yields its port."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Event] = []

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        stop.append(asyncio.Event())
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            port.append(next(iter(server.sockets)).getsockname()[1])
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10), "static server did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        loop.close()


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_page_and_assets_are_served_with_types_and_no_cache() -> None:
    with static_server() as port:
        status, headers, body = http_get(port, "/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert body == (STATIC_DIR / "index.html").read_bytes()
        assert http_get(port, "/index.html?gateway=ws://x:1/")[2] == body
        for name, ctype in (("app.js", "text/javascript"), ("book.js", "text/javascript"),
                            ("style.css", "text/css")):
            status, headers, body = http_get(port, f"/{name}")
            assert status == 200, name
            assert headers["content-type"].startswith(ctype), name
            assert headers["cache-control"] == "no-cache"
            assert body == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/../http_static.py", "/%2e%2e/http_static.py", "/..%2fhttp_static.py",
    "/static/../../pyproject.toml", "/..\\http_static.py", "/nothing.js", "/app.py",
    "/static/", "/.hidden.js", "//etc/passwd", "/%2fetc%2fpasswd", "/app.js%00.css",
    "/%2e%2e%2f%2e%2e%2fpyproject.toml",
])
def test_anything_outside_the_static_files_is_404(path: str) -> None:
    with static_server() as port:
        status, headers, body = http_get(port, path)
        assert status == 404, path
        assert b"import" not in body and b"<html" not in body
        assert headers["content-type"].startswith("text/plain")


def test_websocket_handshake_on_root_still_opens_the_feed() -> None:
    with static_server() as port, connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the `playwright` Python package is missing: pip install -e '.[dev]'",
                    pytrace=False)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class PageWatch:
    """A fresh page plus every console error, page error and websocket frame it made."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(scaled(10_000))
        self.errors: list[str] = []
        self.sent_frames: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("websocket", self._watch_socket)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _watch_socket(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.sent_frames.append(str(payload)))

    def app(self, expression: str) -> Any:
        """Evaluate ``expression`` with ``app`` bound to ``window.streamexApp``."""
        script = f"(() => {{ const app = window.streamexApp; return {expression}; }})()"
        return self.page.evaluate(script)

    def ladder(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(bids, asks) the ladder shows, best first, as (price, size)."""
        levels = self.page.evaluate("""() => {
            const read = (side) => [...document.querySelectorAll(`[data-testid=${side}-level]`)]
              .filter((r) => r.dataset.price).map((r) => [r.dataset.price, r.dataset.qty]);
            return {bids: read("bid"), asks: read("ask").reverse()};
        }""")
        return ([tuple(lv) for lv in levels["bids"]], [tuple(lv) for lv in levels["asks"]])

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watch(browser: Any) -> Iterator[PageWatch]:
    w = PageWatch(browser)
    yield w
    w.close()


TEST_MARKET = {"symbol": "TST-USD", "base": "TST", "quote": "USD", "tick_size": "0.01",
               "lot_size": "0.001", "min_qty": "0.001", "max_qty": "1000",
               "min_price": "0.01", "max_price": "1000000"}


@pytest.fixture
def scripted_feed() -> Iterator[ScriptedFeed]:
    feed = ScriptedFeed([TEST_MARKET])
    yield feed
    feed.close()


@pytest.mark.browser
def test_page_logic_matches_python(watch: PageWatch, scripted_feed: ScriptedFeed) -> None:
    """CRC32, book checksum, SHA-256/HMAC (WebCrypto and the JS fallback), decimals."""
    watch.page.goto(scripted_feed.url)
    rng = random.Random(7)
    texts = ["", "123456789", "a", "é€😀", *("".join(chr(rng.randrange(32, 0x2FF))
                                                  for _ in range(rng.randrange(1, 300)))
                                          for _ in range(40))]
    crcs = watch.page.evaluate("""async (texts) => {
        const { crc32 } = await import("/crc32.js");
        return texts.map((t) => crc32(t));
    }""", texts)
    assert crcs == [zlib.crc32(t.encode()) for t in texts]
    assert crcs[1] == 0xCBF43926

    def level(ticks: int, lots: int) -> tuple[str, str]:
        return (f"{ticks // 100}.{ticks % 100:02d}", f"{lots // 10000}.{lots % 10000:04d}")

    books = []
    for _ in range(60):
        mid = rng.randrange(2, 2_000_000)
        bids = [level(mid - 1 - i * rng.randrange(1, 4), rng.randrange(1, 10**7))
                for i in range(rng.randrange(0, 14)) if mid - 1 - i * 3 > 0]
        asks = [level(mid + i * rng.randrange(1, 4), rng.randrange(1, 10**7))
                for i in range(rng.randrange(0, 14))]
        books.append((bids, asks))
    books.append(([("0.05", "0.0010")], [("0.10", "10.0000")]))  # leading zeros stripped
    sums = watch.page.evaluate("""async (books) => {
        const { bookChecksum } = await import("/book.js");
        return books.map(([bids, asks]) => bookChecksum(asks, bids));
    }""", books)
    assert sums == [feed_checksum(asks, bids) for bids, asks in books]

    secrets_and_texts = [("k" * n, f"{1700000000000 + n}demo-{n}") for n in (0, 1, 32, 64, 65, 200)]
    for secret, text in secrets_and_texts:
        expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        got = watch.page.evaluate("""async ([secret, text]) => {
            const { makeSigner } = await import("/hmac.js");
            const web = await (await makeSigner(secret))(text);
            const js = await (await makeSigner(secret, { forceJs: true }))(text);
            return [web, js];
        }""", [secret, text])
        assert got == [expected, expected], secret
    blobs = ["x" * n for n in range(0, 140)]
    digests = watch.page.evaluate("""async (blobs) => {
        const { sha256, toHex } = await import("/hmac.js");
        return blobs.map((b) => toHex(sha256(new TextEncoder().encode(b))));
    }""", blobs)
    assert digests == [hashlib.sha256(b.encode()).hexdigest() for b in blobs]

    pairs = [("100.00", "99.99"), ("9.5", "10"), ("0010.50", "10.5"), ("1.000", "1"),
             ("0.0001", "0.001"), ("123456789012345.01", "123456789012345.1")]
    cmp = watch.page.evaluate("""async (pairs) => {
        const { compareDecimal, toUnits, fromUnits } = await import("/decimal.js");
        return pairs.map(([a, b]) => [compareDecimal(a, b),
                                      fromUnits(toUnits(a, 4) + toUnits(b, 4), 4)]);
    }""", pairs)
    from decimal import Decimal
    for (a, b), (sign, total) in zip(pairs, cmp, strict=True):
        da, db = Decimal(a), Decimal(b)
        assert sign == (da > db) - (da < db), (a, b)
        assert Decimal(total) == (da + db).quantize(Decimal("0.0001")), (a, b)
    assert watch.errors == []


class BookModel:
    """What the scripted feed's book is: levels as ticks -> lots, formatted on the way out."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.seq = 0

    @staticmethod
    def fmt(ticks: int, lots: int) -> tuple[str, str]:
        return (f"{ticks // 100}.{ticks % 100:02d}",
                "0" if lots == 0 else f"{lots // 1000}.{lots % 1000:03d}")

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [self.fmt(p, q) for p, q in sorted(self.bids.items(), reverse=True)]
        asks = [self.fmt(p, q) for p, q in sorted(self.asks.items())]
        return bids, asks

    def snapshot(self, symbol: str) -> dict[str, Any]:
        self.seq += 1
        bids, asks = self.top()
        return {"channel": "book", "type": "snapshot", "symbol": symbol, "seq": self.seq,
                "bids": bids, "asks": asks, "checksum": feed_checksum(asks, bids)}

    def update(self, symbol: str, rng: random.Random) -> dict[str, Any]:
        """Change 1-3 levels (a delete, a new level or a new size) and describe it."""
        changes: dict[str, list[tuple[str, str]]] = {"bids": [], "asks": []}
        for _ in range(rng.randrange(1, 4)):
            side, name, base = ((self.bids, "bids", 10_000 - 1) if rng.random() < 0.5
                                else (self.asks, "asks", 10_001))
            offset = rng.randrange(0, 18)
            price = base - offset if name == "bids" else base + offset
            lots = 0 if (price in side and rng.random() < 0.3) else rng.randrange(1, 50_000)
            if lots:
                side[price] = lots
            else:
                side.pop(price, None)
            changes[name] = [lv for lv in changes[name] if lv[0] != self.fmt(price, 0)[0]]
            changes[name].append(self.fmt(price, lots))
        prev, self.seq = self.seq, self.seq + rng.randrange(1, 4)
        bids, asks = self.top()
        return {"channel": "book", "type": "update", "symbol": symbol, "seq": self.seq,
                "prev_seq": prev, "bids": changes["bids"], "asks": changes["asks"],
                "checksum": feed_checksum(asks, bids)}


def page_state(watch: PageWatch) -> str:
    return str(watch.page.get_attribute("#md-state", "data-state"))


@pytest.mark.browser
def test_page_verifies_every_book_message_and_resyncs(
        watch: PageWatch, scripted_feed: ScriptedFeed) -> None:
    """Snapshot + updates applied and verified; a bad checksum or a gap makes the page
    resubscribe the book; a closed connection is reconnected with backoff; a burst of
    book updates is applied in full while the DOM is drawn once per frame."""
    symbol = TEST_MARKET["symbol"]
    rng = random.Random(11)
    model = BookModel()
    for i in range(12):
        model.bids[9_999 - i] = 1_000 * (i + 1)
        model.asks[10_001 + i] = 500 * (i + 1)
    watch.page.goto(scripted_feed.url)
    subscribe = scripted_feed.expect_request("subscribe", "book")
    assert subscribe["params"] == {"channel": "book", "symbol": symbol, "depth": 25}
    wait_for(lambda: page_state(watch) == "resyncing", 5, "resyncing before the snapshot")
    scripted_feed.send(model.snapshot(symbol))
    wait_for(lambda: page_state(watch) == "live", 10, "live after the snapshot")
    for _ in range(20):
        scripted_feed.send(model.update(symbol, rng))
    wait_for(lambda: watch.app("app.feed.book.seq") == model.seq, 10, "updates applied")
    bids, asks = model.top()
    wait_for(lambda: watch.ladder() == (bids[:12], asks[:12]), 5, "ladder = model")
    assert watch.page.text_content("#ticker-bid") == bids[0][0]
    assert watch.page.text_content("#ticker-ask") == asks[0][0]

    # A checksum that does not match: unsubscribe + subscribe, ignore updates till a snapshot.
    bad = model.update(symbol, rng)
    bad["checksum"] ^= 1
    scripted_feed.send(bad)
    scripted_feed.expect_request("unsubscribe", "book")
    scripted_feed.expect_request("subscribe", "book")
    wait_for(lambda: page_state(watch) == "resyncing", 5, "resyncing after a bad checksum")
    scripted_feed.send(model.update(symbol, rng))  # stale: must be ignored, not verified
    scripted_feed.send(model.snapshot(symbol))
    wait_for(lambda: page_state(watch) == "live", 5, "live after the new snapshot")
    stats = watch.app("app.feed.stats")
    assert (stats["resyncs"], stats["checksumFailures"], stats["gaps"]) == (1, 1, 0)

    # A gap: prev_seq is not the last seq seen.
    gap = model.update(symbol, rng)
    gap["prev_seq"] -= 1
    scripted_feed.send(gap)
    scripted_feed.expect_request("unsubscribe", "book")
    scripted_feed.expect_request("subscribe", "book")
    scripted_feed.send(model.snapshot(symbol))
    wait_for(lambda: page_state(watch) == "live", 5, "live after the gap's snapshot")
    stats = watch.app("app.feed.stats")
    assert (stats["resyncs"], stats["gaps"]) == (2, 1)
    bids, asks = model.top()
    wait_for(lambda: watch.ladder() == (bids[:12], asks[:12]), 5, "ladder after resync")

    # The feed goes away: the page says so, reconnects, resubscribes everything.
    watch.page.evaluate("""() => {
        window.shownStates = [];
        const state = document.getElementById("md-state");
        new MutationObserver(() => window.shownStates.push(state.dataset.state))
          .observe(state, { attributes: true, attributeFilter: ["data-state"] });
    }""")
    first = scripted_feed.connections.get(timeout=1)
    first.close()
    second = scripted_feed.connections.get(timeout=10)
    assert second is not first
    scripted_feed.expect_request("subscribe", "book")
    scripted_feed.send(model.snapshot(symbol))
    wait_for(lambda: page_state(watch) == "live", 5, "live after reconnecting")
    shown = watch.page.evaluate("window.shownStates")
    assert "reconnecting" in shown and shown[-1] == "live", shown
    assert watch.app("app.feed.stats.reconnects") == 1

    # A burst: every message applied and verified, at most one DOM pass per frame.
    before = watch.app("[app.feed.stats.bookMessages, app.frameStats.frames, "
                       "app.feed.stats.handleMs]")
    burst = 3000
    frames = [json.dumps(model.update(symbol, rng)) for _ in range(burst)]
    started = time.monotonic()
    for frame in frames:
        scripted_feed.send_text(frame)
    wait_for(lambda: watch.app("app.feed.book.seq") == model.seq, 15, "burst applied")
    elapsed = time.monotonic() - started
    after = watch.app("[app.feed.stats.bookMessages, app.frameStats.frames, "
                      "app.feed.stats.handleMs]")
    stats = watch.app("app.feed.stats")
    assert after[0] - before[0] == burst
    assert (stats["resyncs"], stats["checksumFailures"]) == (2, 1), "a good update failed"
    assert after[1] - before[1] < burst / 5, f"{after[1] - before[1]} frames for {burst} updates"
    bids, asks = model.top()
    wait_for(lambda: watch.ladder() == (bids[:12], asks[:12]), 5, "ladder after the burst")
    print(f"burst of {burst} book updates applied in {elapsed:.2f} s wall "
          f"({burst / elapsed:.0f}/s), {(after[2] - before[2]) / burst * 1000:.1f} us each "
          f"to parse+apply+verify, {after[1] - before[1]} frames")
    assert watch.errors == []


# -- against the live exchange ------------------------------------------------------------


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with running_exchange(tmp_path_factory.mktemp("streamex-up")) as running:
        port = int(running.page_url.rsplit(":", 1)[1].strip("/"))
        status, headers, _ = http_get(port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html"), (
            f"the market-data port answers GET / with {status} {headers.get('content-type')}: "
            "the server must pass process_request=marketdata.http_static.process_request")
        yield running


def open_page(watch: PageWatch, exchange: Exchange, symbol: str | None = None) -> None:
    query = (f"?gateway={exchange.gateway_url}" + (f"&symbol={symbol}" if symbol else "")
             + (f"&api={exchange.api_url}" if exchange.api_url else ""))
    watch.page.goto(exchange.page_url + query)
    wait_for(lambda: page_state(watch) == "live", 10, "the feed to be live")


def log_on(watch: PageWatch, exchange: Exchange, account: str) -> None:
    api_key, secret = exchange.accounts[account]
    watch.page.fill("#api-key", api_key)
    watch.page.fill("#api-secret", secret)
    watch.page.click("#logon-btn")
    watch.page.wait_for_selector("#gw-state[data-state=logged_on]")
    assert watch.page.get_attribute("#account", "data-account") == account


def page_matches_feed(watch: PageWatch, feed: FeedBook) -> bool:
    feed.pump(0.05)
    seq = watch.page.get_attribute("#ladder", "data-seq")
    return seq == str(feed.seq) and watch.ladder() == feed.top(12)


def page_vs_feed(watch: PageWatch, feed: FeedBook) -> str:
    return (f"page seq {watch.page.get_attribute('#ladder', 'data-seq')} ladder {watch.ladder()}"
            f" stats {watch.app('app.feed.stats')}; feed seq {feed.seq} top {feed.top(12)}")


@pytest.mark.browser
def test_page_shows_the_seeded_book_and_trades_like_the_feed(
        watch: PageWatch, exchange: Exchange) -> None:
    symbol = "BTC-USD"
    open_page(watch, exchange)
    assert watch.page.input_value("#market-select") == symbol
    assert watch.page.input_value("#gateway-url") == exchange.gateway_url
    feed = FeedBook(exchange.marketdata_url, symbol)
    try:
        with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as maker, \
                OrderSession(exchange.gateway_url, *exchange.accounts["demo2"]) as taker:
            for i in range(15):
                maker.place(symbol, "buy", f"0.{i + 1:02d}00", f"{30_000 - 5 * i}.00")
                maker.place(symbol, "sell", f"0.{i + 2:02d}00", f"{30_010 + 5 * i}.50")
            taker.place(symbol, "buy", "0.0300", "30015.50")  # sweeps two asks
            taker.place(symbol, "sell", "0.0050")  # market order
        wait_for(lambda: page_matches_feed(watch, feed) and len(feed.trades) >= 3, 10,
                 "the page's ladder to equal the feed's book", lambda: page_vs_feed(watch, feed))
        expected = [[t["trade_id"], t["price"], t["qty"], t["taker_side"]] for t in feed.trades]

        def tape() -> list[list[Any]]:
            rows: list[list[Any]] = watch.page.eval_on_selector_all(
                "[data-testid=trade-row]",
                "rows => rows.map(r => [Number(r.dataset.tradeId), r.dataset.price,"
                " r.dataset.qty, r.dataset.side])")
            return rows

        wait_for(lambda: tape() == expected[::-1], 5, "the tape to list the feed's trades",
                 lambda: (tape(), expected))
        assert watch.page.text_content("#ticker-last") == feed.trades[-1]["price"]
        bids, asks = feed.top(1)
        assert watch.page.text_content("#ticker-bid") == bids[0][0]
        assert watch.page.text_content("#ticker-ask") == asks[0][0]
        assert watch.app("app.feed.stats.resyncs") == 0

        # Another market from the selector: its own (empty or other) book, still verified.
        watch.page.select_option("#market-select", "ETH-USD")
        other = FeedBook(exchange.marketdata_url, "ETH-USD")
        try:
            wait_for(lambda: page_state(watch) == "live" and page_matches_feed(watch, other),
                     10, "the ETH-USD book", lambda: page_vs_feed(watch, other))
        finally:
            other.close()
        assert "symbol=ETH-USD" in watch.page.url
    finally:
        feed.close()
    assert watch.errors == []


def open_order_rows(watch: PageWatch) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = watch.page.eval_on_selector_all(
        "[data-testid=open-order-row]", "rows => rows.map(r => ({...r.dataset}))")
    return rows


def ladder_row(watch: PageWatch, side: str, price: str) -> dict[str, str] | None:
    row: dict[str, str] | None = watch.page.evaluate(
        """([side, price]) => {
            const r = document.querySelector(`[data-testid=${side}-level][data-price="${price}"]`);
            return r ? { qty: r.dataset.qty, mine: r.querySelector(".mine").textContent } : null;
        }""", [side, price])
    return row


@pytest.mark.browser
def test_logon_place_limit_order_see_it_and_cancel_it(
        watch: PageWatch, exchange: Exchange) -> None:
    open_page(watch, exchange, "ETH-USD")
    api_key, secret = exchange.accounts["demo1"]
    log_on(watch, exchange, "demo1")
    assert watch.page.input_value("#api-secret") == ""

    watch.page.check("#side-buy")
    watch.page.select_option("#order-type", "limit")
    watch.page.fill("#order-qty", "1.250")
    watch.page.fill("#order-price", "51.37")
    watch.page.check("#order-post-only")
    watch.page.click("#place-btn")
    watch.page.wait_for_selector("[data-testid=open-order-row][data-price='51.37']")
    (row,) = [r for r in open_order_rows(watch) if r["price"] == "51.37"]
    assert (row["symbol"], row["side"], row["qty"], row["leaves"]) == (
        "ETH-USD", "buy", "1.250", "1.250")
    order_id = row["orderId"]
    assert watch.page.get_attribute("#order-result", "data-order-id") == order_id
    wait_for(lambda: ladder_row(watch, "bid", "51.37") == {"qty": "1.250", "mine": "1.250"},
             10, "the order in the ladder")
    assert watch.page.query_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=new]")

    watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
    watch.page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']",
                                 state="detached")
    wait_for(lambda: ladder_row(watch, "bid", "51.37") is None, 10, "the level to go")
    assert watch.page.query_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=canceled]")
    assert watch.page.is_hidden("#order-error")

    # The secret never left the page: not in any frame, not in storage.
    assert watch.sent_frames, "no websocket frames were seen"
    assert not [f for f in watch.sent_frames if secret in f]
    assert any(api_key in f and '"logon"' in f for f in watch.sent_frames)
    stored = watch.page.evaluate(
        "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert secret not in stored
    assert watch.errors == []


@pytest.mark.browser
def test_a_cross_by_another_account_shows_in_tape_and_execution_log(
        watch: PageWatch, exchange: Exchange, tmp_path: Path) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    watch.page.check("#side-sell")
    watch.page.fill("#order-qty", "2.000")
    watch.page.fill("#order-price", "63.10")
    watch.page.click("#place-btn")
    watch.page.wait_for_selector("[data-testid=open-order-row][data-price='63.10']")
    order_id = watch.page.get_attribute("[data-testid=open-order-row][data-price='63.10']",
                                        "data-order-id")
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo2"]) as taker:
        taker_id = taker.place(symbol, "buy", "0.500", "63.10")
        fill = taker.report(taker_id, "trade")
    assert (fill["last_price"], fill["last_qty"]) == ("63.10", "0.500")

    trade = watch.page.wait_for_selector(
        f"[data-testid=trade-row][data-trade-id='{fill['trade_id']}']")
    assert (trade.get_attribute("data-price"), trade.get_attribute("data-qty"),
            trade.get_attribute("data-side")) == ("63.10", "0.500", "buy")
    watch.page.wait_for_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=trade]"
        "[data-status=partially_filled]")
    exec_text = watch.page.text_content(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=trade]")
    assert "0.500 @ 63.10" in str(exec_text)
    wait_for(lambda: [r["leaves"] for r in open_order_rows(watch) if r["orderId"] == order_id]
             == ["1.500"], 10, "the open order's remaining qty")
    wait_for(lambda: ladder_row(watch, "ask", "63.10") == {"qty": "1.500", "mine": "1.500"},
             10, "the ladder to show the rest")
    assert watch.page.text_content("#ticker-last") == "63.10"

    watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
    watch.page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']",
                                 state="detached")
    assert watch.errors == []


@pytest.mark.browser
def test_errors_are_shown_with_their_code(watch: PageWatch, exchange: Exchange) -> None:
    open_page(watch, exchange, "BTC-USD")
    api_key, secret = exchange.accounts["demo1"]
    watch.page.fill("#api-key", api_key)
    watch.page.fill("#api-secret", "not-the-secret")
    watch.page.click("#logon-btn")
    watch.page.wait_for_selector("#order-error[data-code=UNAUTHENTICATED]")
    watch.page.wait_for_selector("#gw-state[data-state=disconnected]")

    # A gateway that is not there: said once, no endless retry with the credentials.
    watch.page.fill("#gateway-url", f"ws://127.0.0.1:{free_port()}/")
    watch.page.fill("#api-secret", secret)
    watch.page.click("#logon-btn")
    watch.page.wait_for_selector("#order-error[data-code=CONNECT]")
    watch.page.wait_for_timeout(600)
    assert watch.page.get_attribute("#gw-state", "data-state") == "disconnected"
    refused = [e for e in watch.errors if "ERR_CONNECTION_REFUSED" in e]
    assert len(refused) == 1, watch.errors
    watch.errors.remove(refused[0])
    watch.page.fill("#gateway-url", exchange.gateway_url)

    log_on(watch, exchange, "demo1")
    for qty, price, code in (("0", "100.00", "INVALID_QTY"), ("abc", "100.00", "INVALID_QTY"),
                             ("0.00015", "100.00", "INVALID_LOT"),
                             ("0.0100", "100.001", "INVALID_TICK"),
                             ("0.0100", "abc", "INVALID_PRICE")):
        watch.page.fill("#order-qty", qty)
        watch.page.fill("#order-price", price)
        watch.page.click("#place-btn")
        box = watch.page.wait_for_selector(f"#order-error[data-code={code}]")
        assert str(box.text_content()).startswith(f"{code}: ")
        assert box.is_visible()
        watch.page.wait_for_selector(f"[data-testid=error-item][data-code={code}]")
    assert not [r for r in open_order_rows(watch) if r["price"] in ("100.00", "100.001", "abc")]
    assert watch.errors == []


@pytest.mark.browser
def test_screenshot_of_a_busy_page(watch: PageWatch, exchange: Exchange,
                                   tmp_path: Path) -> None:
    """A person's view with a book, trades, open orders and executions, kept as an artifact
    (and as docs/screenshot.png with STREAMEX_UPDATE_SCREENSHOT=1)."""
    symbol = "BTC-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    rng = random.Random(3)
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine, \
            OrderSession(exchange.gateway_url, *exchange.accounts["demo2"]) as other:
        for i in range(14):
            mine.place(symbol, "buy", f"0.{rng.randrange(1, 99):02d}00", f"{29_990 - 3 * i}.25")
            mine.place(symbol, "sell", f"0.{rng.randrange(1, 99):02d}00", f"{30_060 + 4 * i}.75")
        watch.page.fill("#order-qty", "0.2500")
        watch.page.fill("#order-price", "29995.00")
        watch.page.click("#place-btn")
        watch.page.wait_for_selector("[data-testid=open-order-row][data-price='29995.00']")
        for _ in range(6):  # demo2 takes from demo1's orders
            other.place(symbol, "sell", f"0.{rng.randrange(1, 9):02d}00")
            # A market buy spends a quote amount under the risk stage (PROTOCOL.md A).
            other.market_buy(symbol, f"{rng.randrange(1, 9) * 300}.00")
    watch.page.wait_for_selector("[data-testid=exec-row][data-exec-type=trade]")
    wait_for(lambda: len(watch.page.query_selector_all("[data-testid=trade-row]")) >= 12, 10,
             "the trades on the tape")
    watch.page.wait_for_timeout(300)
    path = artifacts_dir(tmp_path) / "web-page.png"
    watch.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    if os.environ.get("STREAMEX_UPDATE_SCREENSHOT") == "1":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        (REPO_ROOT / "docs" / "screenshot.png").write_bytes(path.read_bytes())
    assert page_state(watch) == "live"
    assert watch.errors == []



# -- connections down and up, amend, cancel all, the Fill column ---------------------------


def exec_fills(watch: PageWatch, order_id: str, exec_type: str) -> list[str]:
    """The Fill column (found by its header) of the order's execution rows of ``exec_type``."""
    fills: list[str] = watch.page.evaluate("""([orderId, execType]) => {
        const heads = [...document.querySelectorAll("#exec-log thead th")]
          .map((th) => th.textContent.trim());
        const col = heads.indexOf("Fill");
        if (col < 0) throw new Error("no Fill column");
        return [...document.querySelectorAll(
            `[data-testid=exec-row][data-order-id="${orderId}"][data-exec-type="${execType}"]`)]
          .map((r) => r.cells[col].textContent);
    }""", [order_id, exec_type])
    return fills


def greyed(watch: PageWatch, selector: str) -> bool:
    """Whether ``selector`` is drawn greyed out: its opacity with its ancestors' at most 0.6,
    or a grayscale filter on it or an ancestor (what the eye sees, not a class name)."""
    result: bool = watch.page.evaluate("""(selector) => {
        let node = document.querySelector(selector);
        if (!node) throw new Error(`no ${selector}`);
        let opacity = 1;
        let grey = false;
        for (; node && node.nodeType === 1; node = node.parentElement) {
            const style = getComputedStyle(node);
            opacity *= Number(style.opacity);
            if (style.filter.includes("grayscale")) grey = true;
        }
        return opacity <= 0.6 || grey;
    }""", selector)
    return result


def enabled(watch: PageWatch, selector: str) -> list[bool]:
    """For every element matching ``selector``: whether it is enabled."""
    states: list[bool] = watch.page.eval_on_selector_all(
        selector, "nodes => nodes.map((n) => !n.disabled)")
    return states


def page_place(watch: PageWatch, side: str, qty: str, price: str) -> str:
    """Place a GTC limit order from the ticket; wait for its open-order row; its order id."""
    watch.page.check(f"#side-{side}")
    watch.page.select_option("#order-type", "limit")
    watch.page.fill("#order-qty", qty)
    watch.page.fill("#order-price", price)
    watch.page.click("#place-btn")
    row = watch.page.wait_for_selector(
        f"[data-testid=open-order-row][data-side={side}][data-price='{price}'][data-qty='{qty}']")
    order_id = row.get_attribute("data-order-id")
    assert order_id and watch.page.get_attribute("#order-result", "data-order-id") == order_id
    return order_id


def tape_rows(watch: PageWatch) -> list[list[Any]]:
    rows: list[list[Any]] = watch.page.eval_on_selector_all(
        "[data-testid=trade-row]",
        "rows => rows.map(r => [Number(r.dataset.tradeId), r.dataset.price, r.dataset.qty])")
    return rows


def sent_requests(watch: PageWatch, method: str) -> list[dict[str, Any]]:
    """The page's websocket requests with ``method``, in the order they were sent."""
    frames = [json.loads(f) for f in watch.sent_frames if f.startswith("{")]
    return [f for f in frames if f.get("method") == method]


FUNDED = {"BTC": ("1000.0000", "0.0000"), "ETH": ("1000.000", "0.000"),
          "USD": ("1000000.000000", "0.000000")}
"""What ``streamex up`` gives each demo account (1,000 of a base, 1,000,000 of a quote)."""


def balance_rows(watch: PageWatch) -> dict[str, tuple[str, str]]:
    """The Balances panel: asset -> (available, held), read from the cells' text."""
    rows: list[list[str]] = watch.page.eval_on_selector_all(
        "[data-testid=balance-row]",
        "rows => rows.map(r => [r.querySelector('.asset').textContent,"
        " r.querySelector('.available').textContent, r.querySelector('.held').textContent])")
    return {asset: (available, held) for asset, available, held in rows}


def drop_refused_connects(watch: PageWatch) -> list[str]:
    """Remove (and return) Chromium's console errors for websocket connects refused while
    the exchange was down: the page's reconnect attempts, expected here."""
    refused = [e for e in watch.errors if "ERR_CONNECTION_REFUSED" in e]
    watch.errors[:] = [e for e in watch.errors if e not in refused]
    return refused


@pytest.mark.browser
def test_exchange_down_is_shown_and_a_restarted_exchange_is_rebuilt_from_scratch(
        watch: PageWatch, tmp_path: Path) -> None:
    """The exchange stops: the page says which connections are down and that it is
    reconnecting, greys the market data and open orders out, and refuses order entry.
    A fresh exchange comes up on the same ports: the page is live again with nothing
    of the old one (open order, last price, tape) and the new exchange's book."""
    symbol = "BTC-USD"
    with restartable_exchange(tmp_path / "first") as control:
        first = control.exchange
        open_page(watch, first, symbol)
        log_on(watch, first, "demo1")
        assert watch.page.is_hidden("#conn-banner")
        order_id = page_place(watch, "buy", "0.5000", "30000.00")
        with OrderSession(first.gateway_url, *first.accounts["demo2"]) as other:
            other.place(symbol, "sell", "0.2000", "30000.00")
            other.place(symbol, "sell", "1.0000", "30100.00")
        wait_for(lambda: [(r["orderId"], r["leaves"]) for r in open_order_rows(watch)]
                 == [(order_id, "0.3000")], 10, "the page's order partly filled",
                 lambda: open_order_rows(watch))
        wait_for(lambda: len(tape_rows(watch)) == 1, 10, "the trade on the tape")
        wait_for(lambda: watch.page.text_content("#ticker-last") == "30000.00", 10,
                 "the last price")
        wait_for(lambda: ladder_row(watch, "ask", "30100.00") is not None, 10, "the ask")
        # The bought 0.2 BTC is in the Balances panel (a push), as the account has it.
        wait_for(lambda: balance_rows(watch).get("BTC") == ("1000.2000", "0.0000"), 10,
                 "the bought BTC in the balances", lambda: balance_rows(watch))
        with OrderSession(first.gateway_url, *first.accounts["demo1"]) as mine:
            wait_for(lambda: balance_rows(watch) == mine.balances(), 10,
                     "the panel to equal account.balances", lambda: balance_rows(watch))
        assert all(enabled(watch, "#place-btn, #cancel-all-btn, "
                                  "[data-testid=open-order-row] button"))
        assert not greyed(watch, "#ladder") and not greyed(watch, "#ticker")

        # Down: both connections said to be down and reconnecting, data greyed, no order entry.
        control.stop()
        watch.page.wait_for_selector("#conn-banner[data-feed=down][data-orders=down]",
                                     state="visible")
        wait_for(lambda: page_state(watch) == "reconnecting"
                 and watch.page.get_attribute("#gw-state", "data-state") == "reconnecting",
                 10, "both clients reconnecting")
        feed_line = str(watch.page.text_content("#conn-feed"))
        orders_line = str(watch.page.text_content("#conn-orders"))
        assert "Market data feed connection is down" in feed_line and "reconnecting" in feed_line
        assert "Order entry connection is down" in orders_line and "reconnecting" in orders_line
        assert watch.page.is_visible("#conn-feed") and watch.page.is_visible("#conn-orders")
        for part in ("#ladder", "#ticker", "#tape", "#depth-chart", "#open-orders",
                     "#balances"):
            assert greyed(watch, part), f"{part} is not greyed out while down"
        buttons = enabled(watch, "#place-btn, #cancel-all-btn, #amend-btn, "
                                 "[data-testid=open-order-row] button")
        assert len(buttons) == 5 and not any(buttons), buttons
        assert "down" in str(watch.page.text_content("#ticket-hint"))
        # No order goes out, not even by pressing Enter in the ticket.
        watch.page.fill("#order-qty", "0.1000")
        watch.page.press("#order-qty", "Enter")
        path = artifacts_dir(tmp_path) / "web-page-down.png"
        watch.page.screenshot(path=str(path), full_page=True)
        assert len(sent_requests(watch, "order.place")) == 1

        # A fresh exchange (new data, the same demo accounts) where the old one was.
        second = control.start(tmp_path / "second")
        assert second.accounts == first.accounts
        wait_for(lambda: page_state(watch) == "live"
                 and watch.page.get_attribute("#gw-state", "data-state") == "logged_on",
                 30, "the page live and logged on again",
                 lambda: (page_state(watch), watch.page.text_content("#gw-state")))
        watch.page.wait_for_selector("#conn-banner", state="hidden")
        wait_for(lambda: open_order_rows(watch) == [], 10, "the old open order to go",
                 lambda: open_order_rows(watch))
        wait_for(lambda: tape_rows(watch) == [], 10, "the old trade to leave the tape",
                 lambda: tape_rows(watch))
        wait_for(lambda: watch.page.text_content("#ticker-last") == "–", 10,
                 "the old last price to go", lambda: watch.page.text_content("#ticker-last"))
        # The balances rebuilt from the fresh exchange's account.balances: funded anew.
        wait_for(lambda: balance_rows(watch) == FUNDED, 10,
                 "the fresh exchange's balances", lambda: balance_rows(watch))
        for part in ("#ladder", "#ticker", "#tape", "#open-orders", "#balances"):
            assert not greyed(watch, part), f"{part} still greyed out when live"

        # The new exchange's book and trades, and order entry working again.
        feed = FeedBook(second.marketdata_url, symbol)
        try:
            with OrderSession(second.gateway_url, *second.accounts["demo2"]) as other:
                other.place(symbol, "buy", "0.1000", "29000.00")
                other.place(symbol, "sell", "0.2000", "31000.00")
            wait_for(lambda: page_matches_feed(watch, feed), 10,
                     "the page's ladder to equal the new exchange's book",
                     lambda: page_vs_feed(watch, feed))
            assert all(enabled(watch, "#place-btn, #cancel-all-btn"))
            watch.page.check("#side-buy")
            watch.page.fill("#order-qty", "0.0500")
            watch.page.fill("#order-price", "31000.00")
            watch.page.click("#place-btn")  # takes from demo2's ask: the new exchange's trade 1
            wait_for(lambda: (feed.pump(0.05), len(feed.trades) == 1)[1], 10, "the new trade")
            expected = [[t["trade_id"], t["price"], t["qty"]] for t in feed.trades]
            wait_for(lambda: tape_rows(watch) == expected, 10,
                     "the tape to list the new exchange's trade",
                     lambda: (tape_rows(watch), expected))
            wait_for(lambda: watch.page.text_content("#ticker-last") == "31000.00", 10,
                     "the new last price")
            kept = page_place(watch, "buy", "0.1000", "28000.00")
            wait_for(lambda: page_matches_feed(watch, feed), 10,
                     "the page's ladder to equal the new exchange's book",
                     lambda: page_vs_feed(watch, feed))
        finally:
            feed.close()
        with OrderSession(second.gateway_url, *second.accounts["demo1"]) as mine:
            open_ids = [o["order_id"] for o in mine.result("orders.open", {})["orders"]]
        assert open_ids == [kept]
        assert [r["orderId"] for r in open_order_rows(watch)] == [kept]
    assert drop_refused_connects(watch), "no reconnect attempts were refused while down"
    assert watch.errors == []


@pytest.mark.browser
def test_a_restarted_exchange_with_other_accounts_leaves_no_stale_orders(
        watch: PageWatch, tmp_path: Path) -> None:
    """The exchange comes back fresh with other demo accounts: the page cannot log on
    again, so it shows no open orders (no Cancel buttons for orders that do not exist),
    says it is logged off and why, and keeps order entry off; the feed is rebuilt."""
    symbol = "ETH-USD"
    with restartable_exchange(tmp_path / "first") as control:
        first = control.exchange
        open_page(watch, first, symbol)
        log_on(watch, first, "demo1")
        order_id = page_place(watch, "sell", "1.000", "75.00")
        control.stop()
        watch.page.wait_for_selector("#conn-banner[data-orders=down]", state="visible")
        assert [r["orderId"] for r in open_order_rows(watch)] == [order_id]

        second = control.start(tmp_path / "second", keep_accounts=False)
        assert second.accounts["demo1"] != first.accounts["demo1"]
        wait_for(lambda: page_state(watch) == "live"
                 and watch.page.get_attribute("#gw-state", "data-state") == "disconnected",
                 30, "the feed live again and the logon refused",
                 lambda: (page_state(watch), watch.page.text_content("#gw-state")))
        watch.page.wait_for_selector("[data-testid=error-item][data-code=UNAUTHENTICATED]")
        assert "logon failed" in str(watch.page.text_content("#gw-state"))
        wait_for(lambda: open_order_rows(watch) == [], 10, "no stale open orders",
                 lambda: open_order_rows(watch))
        assert watch.page.query_selector_all("[data-testid=cancel-order]") == []
        watch.page.wait_for_selector("#conn-banner", state="hidden")
        assert not any(enabled(watch, "#place-btn, #cancel-all-btn, #amend-btn"))
        assert "log on" in str(watch.page.text_content("#ticket-hint"))
        feed = FeedBook(second.marketdata_url, symbol)
        try:
            wait_for(lambda: page_matches_feed(watch, feed), 10,
                     "the page's ladder to equal the new exchange's (empty) book",
                     lambda: page_vs_feed(watch, feed))
        finally:
            feed.close()
        assert watch.page.text_content("#ticker-last") == "–"

        # Logging on with the new keys works.
        log_on(watch, second, "demo1")
        assert all(enabled(watch, "#place-btn, #cancel-all-btn"))
        assert open_order_rows(watch) == []
    drop_refused_connects(watch)
    assert watch.errors == []


@pytest.mark.browser
def test_amend_from_the_page_changes_the_order(watch: PageWatch, exchange: Exchange) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    order_id = page_place(watch, "buy", "1.000", "41.00")
    wait_for(lambda: ladder_row(watch, "bid", "41.00") == {"qty": "1.000", "mine": "1.000"},
             10, "the order in the ladder")

    # A new price and a new total quantity.
    watch.page.click(f"[data-testid=amend-order][data-order-id='{order_id}']")
    watch.page.wait_for_selector("#amend-form", state="visible")
    assert order_id in str(watch.page.text_content("#amend-order"))
    assert (watch.page.input_value("#amend-price"), watch.page.input_value("#amend-qty")) == (
        "41.00", "1.000")
    watch.page.fill("#amend-price", "41.50")
    watch.page.fill("#amend-qty", "2.500")
    watch.page.click("#amend-btn")
    watch.page.wait_for_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=replaced]")
    watch.page.wait_for_selector(
        f"[data-testid=open-order-row][data-order-id='{order_id}'][data-price='41.50']"
        "[data-qty='2.500'][data-leaves='2.500']")
    assert len(open_order_rows(watch)) == len({r["orderId"] for r in open_order_rows(watch)})
    result = str(watch.page.text_content("#orders-result"))
    assert order_id in result and "received" in result
    assert watch.page.is_hidden("#orders-error")
    wait_for(lambda: ladder_row(watch, "bid", "41.50") == {"qty": "2.500", "mine": "2.500"}
             and ladder_row(watch, "bid", "41.00") is None, 10, "the ladder to move the order")
    (amend,) = sent_requests(watch, "order.amend")
    assert amend["params"] == {"symbol": symbol, "order_id": order_id, "price": "41.50",
                               "qty": "2.500"}
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine:
        (report,) = [o for o in mine.result("orders.open", {"symbol": symbol})["orders"]
                     if o["order_id"] == order_id]
    assert (report["price"], report["qty"], report["leaves_qty"]) == ("41.50", "2.500", "2.500")

    # Only the quantity, smaller: only qty is sent.
    watch.page.click(f"[data-testid=amend-order][data-order-id='{order_id}']")
    watch.page.fill("#amend-qty", "1.200")
    watch.page.click("#amend-btn")
    watch.page.wait_for_selector(
        f"[data-testid=open-order-row][data-order-id='{order_id}'][data-price='41.50']"
        "[data-qty='1.200']")
    assert sent_requests(watch, "order.amend")[-1]["params"] == {
        "symbol": symbol, "order_id": order_id, "qty": "1.200"}

    # Refused amends are shown with their code, like refused orders; the order stays.
    watch.page.click(f"[data-testid=amend-order][data-order-id='{order_id}']")
    for price, qty, code in (("41.50", "abc", "INVALID_QTY"), ("41.505", "1.200", "INVALID_TICK"),
                             ("41.50", "1.2005", "INVALID_LOT")):
        watch.page.fill("#amend-price", price)
        watch.page.fill("#amend-qty", qty)
        watch.page.click("#amend-btn")
        box = watch.page.wait_for_selector(f"#orders-error[data-code={code}]")
        assert str(box.text_content()).startswith(f"{code}: ")
        assert box.is_visible()
        watch.page.wait_for_selector(f"[data-testid=error-item][data-code={code}]")
    assert [(r["price"], r["qty"]) for r in open_order_rows(watch)
            if r["orderId"] == order_id] == [("41.50", "1.200")]

    watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
    watch.page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']",
                                 state="detached")
    watch.page.wait_for_selector("#amend-form", state="hidden")
    assert watch.errors == []


def local_input(watch: PageWatch, ms: int) -> str:
    """The datetime-local text (the browser's time zone) of the instant ``ms``."""
    offset_min: int = watch.page.evaluate("(ms) => new Date(ms).getTimezoneOffset()", ms)
    local = datetime.datetime.fromtimestamp(ms / 1000 - offset_min * 60, datetime.UTC)
    return local.strftime("%Y-%m-%dT%H:%M:%S")


def cell_text(watch: PageWatch, order_id: str, column: str) -> str:
    """The text of the open-order row's cell under the header ``column``."""
    text: str = watch.page.evaluate("""([orderId, column]) => {
        const heads = [...document.querySelectorAll("#open-orders thead th")]
          .map((th) => th.textContent.trim());
        const col = heads.indexOf(column);
        if (col < 0) throw new Error(`no ${column} column`);
        const row = document.querySelector(
            `[data-testid=open-order-row][data-order-id="${orderId}"]`);
        return row ? row.cells[col].textContent : null;
    }""", [order_id, column])
    return text


@pytest.mark.browser
def test_a_stop_limit_from_the_ticket_waits_untriggered_then_is_amended_and_canceled(
        watch: PageWatch, exchange: Exchange) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    page = watch.page
    page.check("#side-sell")
    assert page.is_hidden("#order-stop-price") and page.is_hidden("#order-expire")
    page.select_option("#order-type", "stop_limit")
    assert page.is_visible("#order-stop-price") and page.is_enabled("#order-price")
    assert page.is_disabled("#order-post-only") and page.is_enabled("#order-display-qty")
    # A sell that triggers only if ETH trades at 1.50 or below: it waits.
    page.fill("#order-qty", "0.750")
    page.fill("#order-stop-price", "1.50")
    page.fill("#order-price", "1.40")
    page.fill("#order-display-qty", "0.250")
    page.select_option("#order-tif", "GTD")
    assert page.is_visible("#order-expire")
    assert page.input_value("#order-expire") != ""  # an hour ahead until the user sets one
    expires = (int(time.time()) + 7200) * 1000
    page.fill("#order-expire", local_input(watch, expires))
    page.click("#place-btn")
    row = page.wait_for_selector(
        "[data-testid=open-order-row][data-type=stop_limit][data-status=untriggered]"
        "[data-stop-price='1.50']")
    order_id = str(row.get_attribute("data-order-id"))
    (placed,) = sent_requests(watch, "order.place")
    assert placed["params"] == {
        "symbol": symbol, "side": "sell", "type": "stop_limit", "qty": "0.750",
        "stop_price": "1.50", "price": "1.40", "tif": "GTD", "display_qty": "0.250",
        "expire_time": expires}
    (shown,) = [r for r in open_order_rows(watch) if r["orderId"] == order_id]
    assert (shown["price"], shown["qty"], shown["displayQty"], shown["leaves"], shown["tif"],
            shown["expireTime"]) == ("1.40", "0.750", "0.250", "0.750", "GTD", str(expires))
    assert cell_text(watch, order_id, "Qty") == "0.750 (shows 0.250)"
    assert (cell_text(watch, order_id, "Stop"), cell_text(watch, order_id, "Status"),
            cell_text(watch, order_id, "Type")) == ("1.50", "untriggered", "stop limit")
    assert cell_text(watch, order_id, "TIF").startswith("GTD ")
    assert ladder_row(watch, "ask", "1.40") is None  # not in the book while it waits
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine:
        (report,) = [o for o in mine.result("orders.open", {"symbol": symbol})["orders"]
                     if o["order_id"] == order_id]
    assert (report["status"], report["stop_price"], report["display_qty"],
            report["expire_time"]) == ("untriggered", "1.50", "0.250", expires)

    # Its trigger moves: only the stop price is sent.
    page.click(f"[data-testid=amend-order][data-order-id='{order_id}']")
    page.wait_for_selector("#amend-form", state="visible")
    assert page.input_value("#amend-stop-price") == "1.50"
    assert page.is_enabled("#amend-stop-price")
    page.fill("#amend-stop-price", "1.45")
    page.click("#amend-btn")
    page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']"
                           "[data-stop-price='1.45'][data-status=untriggered]")
    assert sent_requests(watch, "order.amend")[-1]["params"] == {
        "symbol": symbol, "order_id": order_id, "stop_price": "1.45"}

    page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
    page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']",
                           state="detached")
    assert page.query_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=canceled]")

    # What the ticket leaves out, the gateway names: a stop without its stop price.
    page.select_option("#order-type", "stop_market")
    assert page.is_disabled("#order-price") and page.is_disabled("#order-display-qty")
    page.fill("#order-stop-price", "")
    page.fill("#order-qty", "0.100")
    page.select_option("#order-tif", "GTC")
    page.click("#place-btn")
    box = page.wait_for_selector("#order-error[data-code=INVALID_STOP_PRICE]")
    assert "params.stop_price" in str(box.text_content())
    assert page.is_hidden("#orders-error")
    assert watch.errors == []


@pytest.mark.browser
def test_cancel_all_from_the_page(watch: PageWatch, exchange: Exchange) -> None:
    open_page(watch, exchange, "ETH-USD")
    log_on(watch, exchange, "demo1")
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine:
        placed = {("ETH-USD", mine.place("ETH-USD", "sell", "0.700", "90.00")),
                  ("BTC-USD", mine.place("BTC-USD", "buy", "0.0100", "20000.00")),
                  ("BTC-USD", mine.place("BTC-USD", "sell", "0.0200", "45000.00"))}
        placed.add(("ETH-USD", page_place(watch, "buy", "0.500", "30.00")))

        def shown() -> set[tuple[str, str]]:
            return {(r["symbol"], r["orderId"]) for r in open_order_rows(watch)}

        def account_open() -> set[tuple[str, str]]:
            return {(o["symbol"], o["order_id"])
                    for o in mine.result("orders.open", {})["orders"]}

        wait_for(lambda: placed <= shown(), 10, "the orders in the page", shown)
        before = account_open()
        assert shown() == before

        # The selected market only.
        watch.page.select_option("#cancel-all-scope", "market")
        watch.page.click("#cancel-all-btn")
        wait_for(lambda: not [s for s, _ in shown() if s == "ETH-USD"], 10,
                 "the ETH-USD orders to go", shown)
        assert "cancel all (ETH-USD) received" in str(watch.page.text_content("#orders-result"))
        others = {o for o in before if o[0] != "ETH-USD"}
        wait_for(lambda: account_open() == others, 10, "only the ETH-USD orders canceled",
                 account_open)
        assert shown() == others and len(others) >= 2
        assert sent_requests(watch, "order.cancel_all")[-1]["params"] == {"symbol": "ETH-USD"}

        # Every market.
        watch.page.select_option("#cancel-all-scope", "all")
        watch.page.click("#cancel-all-btn")
        wait_for(lambda: shown() == set(), 10, "every open order to go", shown)
        assert "cancel all (all markets) received" in str(
            watch.page.text_content("#orders-result"))
        assert account_open() == set()
        assert sent_requests(watch, "order.cancel_all")[-1]["params"] == {}
        for _, order_id in placed:
            watch.page.wait_for_selector(f"[data-testid=exec-row][data-order-id='{order_id}']"
                                         "[data-exec-type=canceled]")
    assert watch.page.is_hidden("#orders-error")
    assert watch.errors == []


@pytest.mark.browser
def test_fill_column_shows_only_trades(watch: PageWatch, exchange: Exchange) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    order_id = page_place(watch, "sell", "1.000", "70.00")
    watch.page.wait_for_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=new]")
    assert exec_fills(watch, order_id, "new") == [""]
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo2"]) as taker:
        taker_id = taker.place(symbol, "buy", "0.400", "70.00")
        fill = taker.report(taker_id, "trade")
    assert (fill["last_qty"], fill["last_price"]) == ("0.400", "70.00")
    watch.page.wait_for_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=trade]")
    assert exec_fills(watch, order_id, "trade") == ["0.400 @ 70.00"]
    watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
    watch.page.wait_for_selector(
        f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=canceled]")
    assert exec_fills(watch, order_id, "canceled") == [""]
    assert exec_fills(watch, order_id, "new") == [""]
    assert watch.errors == []


# -- the risk stage: balances, holds, fees, INSUFFICIENT_FUNDS, market buys by quote --------

FEE_MARKETS = """
[[markets]]
symbol = "ETH-USD"
base = "ETH"
quote = "USD"
tick_size = "0.01"
lot_size = "0.001"
min_qty = "0.001"
max_qty = "10000"
min_price = "0.01"
max_price = "100000"
maker_fee = "0.001"
taker_fee = "0.002"
quote_decimals = 6
"""
"""One market with fees (10 bps maker, 20 bps taker), the risk stage on (the default)."""


def balances_requests(watch: PageWatch) -> int:
    return len(sent_requests(watch, "account.balances"))


def exec_cells(watch: PageWatch, order_id: str, exec_type: str, column: str) -> list[str]:
    """The ``column`` (found by its header) of the order's execution rows of ``exec_type``."""
    cells: list[str] = watch.page.evaluate("""([orderId, execType, column]) => {
        const heads = [...document.querySelectorAll("#exec-log thead th")]
          .map((th) => th.textContent.trim());
        const col = heads.indexOf(column);
        if (col < 0) throw new Error(`no ${column} column`);
        return [...document.querySelectorAll(
            `[data-testid=exec-row][data-order-id="${orderId}"][data-exec-type="${execType}"]`)]
          .map((r) => r.cells[col].textContent);
    }""", [order_id, exec_type, column])
    return cells


@pytest.mark.browser
def test_balances_panel_shows_the_funded_demo_account(watch: PageWatch, tmp_path: Path) -> None:
    """A fresh ``streamex up``: after logon the page asks ``account.balances`` once and
    shows what the demo account was funded with; logging off empties the panel."""
    with running_exchange(tmp_path / "up") as fresh:
        open_page(watch, fresh, "ETH-USD")
        assert watch.page.is_visible("#balances-panel")
        assert balance_rows(watch) == {}
        assert "log on" in str(watch.page.text_content("#balances-state"))
        heads = watch.page.eval_on_selector_all("#balances thead th",
                                                "ths => ths.map((th) => th.textContent)")
        assert heads == ["Asset", "Available", "Held"]
        log_on(watch, fresh, "demo1")
        wait_for(lambda: balance_rows(watch) == FUNDED, 10, "the funded balances",
                 lambda: balance_rows(watch))
        with OrderSession(fresh.gateway_url, *fresh.accounts["demo1"]) as mine:
            assert mine.balances() == FUNDED
        assert watch.page.is_visible("[data-testid=balance-row][data-asset=USD]")
        assert watch.page.get_attribute("#balances", "data-risk") == "true"
        (request,) = sent_requests(watch, "account.balances")
        assert request["params"] == {}
        assert watch.page.query_selector_all("[data-testid=error-item]") == []

        watch.page.click("#logoff-btn")
        watch.page.wait_for_selector("#gw-state[data-state=disconnected]")
        wait_for(lambda: balance_rows(watch) == {}, 10, "no balances once logged off",
                 lambda: balance_rows(watch))
    assert watch.errors == []


@pytest.mark.browser
def test_a_resting_buy_moves_its_hold_live_and_a_cancel_restores_it(
        watch: PageWatch, exchange: Exchange) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine:
        wait_for(lambda: balance_rows(watch) == mine.balances(), 10,
                 "the panel to equal account.balances", lambda: balance_rows(watch))
        before = balance_rows(watch)
        available, held = (Decimal(x) for x in before["USD"])
        # Hold of a buy limit: price x qty x (1 + taker_fee); this market's fees are 0.
        taker_fee = Decimal(watch.app("app.feed.markets.find((m) => m.symbol === "
                                      "'ETH-USD').taker_fee"))
        hold = (Decimal("40.00") * Decimal("2.000") * (1 + taker_fee)).quantize(
            Decimal("0.000001"), rounding=ROUND_CEILING)
        moved = (f"{available - hold:.6f}", f"{held + hold:.6f}")

        order_id = page_place(watch, "buy", "2.000", "40.00")
        wait_for(lambda: balance_rows(watch).get("USD") == moved, 10,
                 "the hold moved from available to held", lambda: balance_rows(watch))
        assert {a: v for a, v in balance_rows(watch).items() if a != "USD"} == {
            a: v for a, v in before.items() if a != "USD"}
        assert mine.balances()["USD"] == moved
        # Live, from the `balances` push: the page asked account.balances only at logon.
        assert balances_requests(watch) == 1

        watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
        watch.page.wait_for_selector(
            f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=canceled]")
        wait_for(lambda: balance_rows(watch) == before, 10, "the hold back in available",
                 lambda: balance_rows(watch))
        assert mine.balances() == before
    assert balances_requests(watch) == 1
    assert watch.errors == []


@pytest.mark.browser
def test_an_order_too_large_for_the_balance_shows_insufficient_funds(
        watch: PageWatch, exchange: Exchange) -> None:
    symbol = "ETH-USD"
    open_page(watch, exchange, symbol)
    log_on(watch, exchange, "demo1")
    with OrderSession(exchange.gateway_url, *exchange.accounts["demo1"]) as mine:
        wait_for(lambda: balance_rows(watch) == mine.balances(), 10,
                 "the panel to equal account.balances", lambda: balance_rows(watch))
        before = balance_rows(watch)
    # A buy of 5000 ETH at 99,999 holds far more than 1,000,000 USD; a sell of 5000 ETH more
    # ETH than the account has.
    for side, price in (("buy", "99999.00"), ("sell", "99999.00")):
        watch.page.check(f"#side-{side}")
        watch.page.select_option("#order-type", "limit")
        watch.page.fill("#order-qty", "5000.000")
        watch.page.fill("#order-price", price)
        shown = watch.page.get_attribute("#order-result", "data-order-id")
        watch.page.click("#place-btn")

        def received(shown: str | None = shown) -> str | None:
            now = watch.page.get_attribute("#order-result", "data-order-id")
            return now if now and now != shown else None

        order_id = str(wait_for(received, 10, "the order received"))
        assert "received" in str(watch.page.text_content("#order-result"))
        watch.page.wait_for_selector(
            f"[data-testid=exec-row][data-exec-type=rejected][data-status=rejected]"
            f"[data-order-id='{order_id}']")
        assert exec_cells(watch, order_id, "rejected", "Reason") == ["INSUFFICIENT_FUNDS"]
        box = watch.page.wait_for_selector("#order-error[data-code=INSUFFICIENT_FUNDS]")
        assert box.is_visible()
        text = str(box.text_content())
        assert text.startswith("INSUFFICIENT_FUNDS: ") and order_id in text, text
        watch.page.wait_for_selector("[data-testid=error-item][data-code=INSUFFICIENT_FUNDS]")
        assert not [r for r in open_order_rows(watch) if r["orderId"] == order_id]
    assert balance_rows(watch) == before
    assert watch.errors == []


@pytest.mark.browser
def test_a_fill_shows_its_fee_and_a_market_buy_spends_quote(
        watch: PageWatch, tmp_path: Path) -> None:
    """With fees on the market: the maker's fill and the taker's fill show the fee the
    execution report charged, the balances move by notional and fee, and a market buy
    from the ticket sends ``quote_qty`` ("Spend (USD)") instead of ``qty``."""
    symbol = "ETH-USD"
    with running_exchange(tmp_path / "up", FEE_MARKETS) as fees:
        open_page(watch, fees, symbol)
        log_on(watch, fees, "demo1")
        wait_for(lambda: balance_rows(watch) == {"ETH": FUNDED["ETH"], "USD": FUNDED["USD"]},
                 10, "the funded balances", lambda: balance_rows(watch))
        with OrderSession(fees.gateway_url, *fees.accounts["demo1"]) as mine, \
                OrderSession(fees.gateway_url, *fees.accounts["demo2"]) as other:
            # demo1's resting sell (the page's) is hit by demo2: demo1 pays the maker fee.
            order_id = page_place(watch, "sell", "1.000", "70.00")
            other.place(symbol, "buy", "0.400", "70.00")
            fill = mine.report(order_id, "trade")
            assert (fill["last_qty"], fill["last_price"], fill["liquidity"]) == (
                "0.400", "70.00", "maker")
            assert (fill["fee"], fill["fee_asset"]) == ("0.028000", "USD")  # 28 x 0.001
            watch.page.wait_for_selector(
                f"[data-testid=exec-row][data-order-id='{order_id}'][data-exec-type=trade]")
            assert exec_fills(watch, order_id, "trade") == ["0.400 @ 70.00"]
            assert exec_cells(watch, order_id, "trade", "Fee") == ["0.028000 USD"]
            assert exec_cells(watch, order_id, "new", "Fee") == [""]
            wait_for(lambda: balance_rows(watch) == {"ETH": ("999.000", "0.600"),
                                                     "USD": ("1000027.972000", "0.000000")},
                     10, "the fill settled: 0.4 ETH out of the hold, 28 - 0.028 USD in",
                     lambda: balance_rows(watch))
            assert balance_rows(watch) == mine.balances()

            # A market buy from the ticket: it spends a quote amount, fees included.
            watch.page.click(f"[data-testid=cancel-order][data-order-id='{order_id}']")
            watch.page.wait_for_selector(
                f"[data-testid=open-order-row][data-order-id='{order_id}']", state="detached")
            ask = other.place(symbol, "sell", "1.000", "80.00")
            other.report(ask, "new")
            watch.page.check("#side-buy")
            watch.page.select_option("#order-type", "market")
            assert watch.page.is_visible("#order-quote-qty")
            assert watch.page.is_hidden("#order-qty")
            label = str(watch.page.text_content("#order-quote-qty-label")).strip()
            assert label.startswith("Spend (USD)"), label
            watch.page.check("#side-sell")  # a market sell has a quantity, as ever
            assert watch.page.is_visible("#order-qty")
            assert watch.page.is_hidden("#order-quote-qty")
            watch.page.check("#side-buy")
            watch.page.fill("#order-quote-qty", "40.08")  # 0.5 x 80 = 40, + 0.08 taker fee
            watch.page.click("#place-btn")
            (place,) = [r for r in sent_requests(watch, "order.place")
                        if r["params"]["type"] == "market"]
            assert place["params"] == {"symbol": symbol, "side": "buy", "type": "market",
                                       "quote_qty": "40.08"}
            taken = wait_for(lambda: watch.page.get_attribute("#order-result", "data-order-id")
                             not in (None, order_id)
                             and watch.page.get_attribute("#order-result", "data-order-id"),
                             10, "the market buy received")
            report = mine.report(taken, "trade")
            assert (report["last_qty"], report["last_price"], report["fee"]) == (
                "0.500", "80.00", "0.080000")
            watch.page.wait_for_selector(
                f"[data-testid=exec-row][data-order-id='{taken}'][data-exec-type=trade]")
            assert exec_fills(watch, taken, "trade") == ["0.500 @ 80.00"]
            assert exec_cells(watch, taken, "trade", "Fee") == ["0.080000 USD"]
            # 1000 - 0.4 + 0.5 ETH; 1,000,000 + 28 - 0.028 - 40.08 USD, nothing held.
            wait_for(lambda: balance_rows(watch) == {"ETH": ("1000.100", "0.000"),
                                                     "USD": ("999987.892000", "0.000000")},
                     10, "the market buy settled", lambda: balance_rows(watch))
            assert balance_rows(watch) == mine.balances()
        assert watch.page.is_hidden("#order-error")
    assert watch.errors == []


@pytest.mark.browser
def test_risk_off_hides_balances_and_a_market_buy_has_a_qty(
        watch: PageWatch, tmp_path: Path) -> None:
    """``[risk] enabled = false``: ``account.balances`` is UNKNOWN_METHOD, so the page
    hides the Balances panel (no error shown for it) and a market buy sends ``qty``."""
    symbol = "ETH-USD"
    with running_exchange(tmp_path / "up", "[risk]\nenabled = false\n") as plain:
        open_page(watch, plain, symbol)
        log_on(watch, plain, "demo1")
        wait_for(lambda: watch.app("app.gateway.risk") is False, 10, "risk known to be off")
        watch.page.wait_for_selector("#balances-panel", state="hidden")
        assert balance_rows(watch) == {}
        assert watch.page.query_selector_all("[data-testid=error-item]") == []
        with OrderSession(plain.gateway_url, *plain.accounts["demo2"]) as other:
            other.report(other.place(symbol, "sell", "1.000", "80.00"), "new")
        watch.page.check("#side-buy")
        watch.page.select_option("#order-type", "market")
        assert watch.page.is_visible("#order-qty")
        assert watch.page.is_hidden("#order-quote-qty")
        watch.page.fill("#order-qty", "0.250")
        watch.page.click("#place-btn")
        (place,) = sent_requests(watch, "order.place")
        assert place["params"] == {"symbol": symbol, "side": "buy", "type": "market",
                                   "qty": "0.250"}
        watch.page.wait_for_selector("[data-testid=exec-row][data-exec-type=trade]")
        order_id = str(watch.page.get_attribute("#order-result", "data-order-id"))
        assert exec_fills(watch, order_id, "trade") == ["0.250 @ 80.00"]
        assert watch.page.is_hidden("#order-error")
        assert watch.page.query_selector_all("[data-testid=error-item]") == []
    assert watch.errors == []


# -- candles and the 24-hour ticker ----------------------------------------------------------


def chart(watch: PageWatch) -> dict[str, Any]:
    """What the candle chart drew: its interval and candles (the canvas's test hook)."""
    got: dict[str, Any] = watch.page.evaluate("""() => {
        const c = document.getElementById("candle-chart");
        return {interval: c.dataset.interval, symbol: c.dataset.symbol,
                candles: JSON.parse(c.dataset.candles || "[]")};
    }""")
    return got


def as_trades(symbol: str, data: list[dict[str, Any]]) -> list[Trade]:
    """Wire trades back to engine units, for the Decimal reference."""
    market = next(m for m in DEFAULT_MARKETS if m.symbol == symbol)
    return [Trade(0, t["ts"], t["trade_id"], market.parse_price(t["price"]),
                  market.parse_qty(t["qty"]), t["taker_side"], "", "") for t in data]


def drawn_as_expected(watch: PageWatch, symbol: str, interval: str, width: int,
                      trades: list[dict[str, Any]]) -> bool:
    """The chart shows ``interval``'s candles of ``trades``: OHLC, volumes, counts, times;
    every candle but the last closed (the last one's flag follows the market's clock)."""
    got = chart(watch)
    market = next(m for m in DEFAULT_MARKETS if m.symbol == symbol)
    expected = wire_candles(market, as_trades(symbol, trades), width, 0)
    drawn = got["candles"]
    if got["interval"] != interval or len(drawn) != len(expected):
        return False
    flags = [c.pop("closed") for c in drawn]
    for c in expected:
        c.pop("closed")
    return drawn == expected and all(flags[:-1])


def ticker_day(watch: PageWatch) -> tuple[str | None, ...]:
    return tuple(watch.page.text_content(f"#ticker-{name}") for name in (
        "open-24h", "high-24h", "low-24h", "volume-24h", "quote-volume-24h"))


def expected_day(symbol: str, trades: list[dict[str, Any]]) -> tuple[str, ...]:
    market = next(m for m in DEFAULT_MARKETS if m.symbol == symbol)
    day = wire_stats(market, as_trades(symbol, trades), trades[-1]["ts"])
    return (day["open_24h"], day["high_24h"], day["low_24h"],
            f"{day['volume_24h']} {market.base}", f"{day['quote_volume_24h']} {market.quote}")


@pytest.mark.browser
def test_candle_chart_and_24h_ticker_from_real_trades_survive_a_restart(
        watch: PageWatch, tmp_path: Path) -> None:
    """Trades through the gateway become the chart's candles (1m, then 1h from the
    switcher) and the ticker's 24-hour fields, exactly as the reference computes them
    from the trades; after the whole exchange restarts (same data directory) the page
    shows the same candles, tape and 24-hour fields again, from the history database,
    and goes on live."""
    symbol = "BTC-USD"
    with restartable_exchange(tmp_path / "data") as control:
        first = control.exchange
        open_page(watch, first, symbol)
        assert chart(watch) == {"interval": "1m", "symbol": symbol, "candles": []}
        feed = FeedBook(first.marketdata_url, symbol)
        try:
            with OrderSession(first.gateway_url, *first.accounts["demo1"]) as maker, \
                    OrderSession(first.gateway_url, *first.accounts["demo2"]) as taker:
                for qty, price in (("0.1000", "30000.00"), ("0.2000", "30012.50"),
                                   ("0.1500", "30005.00")):
                    maker.place(symbol, "sell", qty, price)
                maker.place(symbol, "buy", "0.3000", "29990.00")
                taker.place(symbol, "buy", "0.3000", "30012.50")  # sweeps three asks
                taker.place(symbol, "sell", "0.0500")  # a market sell into the bid
            wait_for(lambda: (feed.pump(0.05), len(feed.trades) == 4)[1], 10,
                     "the four trades on the feed", lambda: feed.trades)
            trades = list(feed.trades)
        finally:
            feed.close()
        assert [t["price"] for t in trades] == ["30000.00", "30005.00", "30012.50",
                                                 "29990.00"]
        wait_for(lambda: drawn_as_expected(watch, symbol, "1m", 60_000, trades), 10,
                 "the 1m candles of the trades", lambda: chart(watch))
        wait_for(lambda: ticker_day(watch) == expected_day(symbol, trades), 10,
                 "the 24-hour fields", lambda: ticker_day(watch))
        assert "-10.00" in str(watch.page.text_content("#ticker-change-24h"))
        watch.page.click("#candle-intervals button[data-interval='1h']")
        wait_for(lambda: drawn_as_expected(watch, symbol, "1h", 3_600_000, trades), 10,
                 "the 1h candle", lambda: chart(watch))
        assert "interval=1h" in watch.page.url
        assert watch.page.get_attribute(
            "#candle-intervals button[data-interval='1h']", "aria-checked") == "true"

        # The whole exchange restarts on the same data: the history comes back.
        control.stop()
        wait_for(lambda: greyed(watch, "#candle-chart"), 10, "the chart greyed out")
        second = control.start()
        wait_for(lambda: page_state(watch) == "live", 30, "the page live again")
        wait_for(lambda: drawn_as_expected(watch, symbol, "1h", 3_600_000, trades), 10,
                 "the 1h candle again, from the history", lambda: chart(watch))
        expected_tape = [[t["trade_id"], t["price"], t["qty"]] for t in trades[::-1]]
        wait_for(lambda: tape_rows(watch) == expected_tape, 10, "the tape again",
                 lambda: tape_rows(watch))
        wait_for(lambda: ticker_day(watch) == expected_day(symbol, trades), 10,
                 "the 24-hour fields again", lambda: ticker_day(watch))
        assert not greyed(watch, "#candle-chart")

        # Live again: one more trade, in the 1m chart too.
        watch.page.click("#candle-intervals button[data-interval='1m']")
        feed = FeedBook(second.marketdata_url, symbol)
        try:
            with OrderSession(second.gateway_url, *second.accounts["demo2"]) as taker:
                taker.place(symbol, "sell", "0.1000", "29990.00")
            wait_for(lambda: (feed.pump(0.05), len(feed.trades) == 5)[1], 10,
                     "the fifth trade", lambda: feed.trades)
            trades = list(feed.trades)
        finally:
            feed.close()
        assert [t["trade_id"] for t in trades] == [1, 2, 3, 4, 5]
        wait_for(lambda: drawn_as_expected(watch, symbol, "1m", 60_000, trades), 10,
                 "the 1m candles with the new trade", lambda: chart(watch))
        wait_for(lambda: ticker_day(watch) == expected_day(symbol, trades), 10,
                 "the 24-hour fields with the new trade", lambda: ticker_day(watch))
        path = artifacts_dir(tmp_path) / "web-page-candles.png"
        watch.page.screenshot(path=str(path), full_page=True)
    drop_refused_connects(watch)
    assert watch.errors == []


# -- order history -------------------------------------------------------------------------


def history_rows(watch: PageWatch) -> dict[str, dict[str, str]]:
    """Order history rows by streamex order id: their data attributes."""
    rows: list[dict[str, str]] = watch.page.eval_on_selector_all(
        "[data-testid=history-row]", "rows => rows.map(r => ({...r.dataset}))")
    return {r["orderId"]: r for r in rows}


def history_row(watch: PageWatch, order_id: str) -> tuple[str, ...] | None:
    row = history_rows(watch).get(order_id)
    return None if row is None else (row["status"], row["side"], row["price"], row["qty"],
                                     row["filled"])


def rest_orders(exchange: Exchange, account: str, symbol: str) -> list[Any]:
    """The account's latest orders by the SDK's REST client (in a thread of its own: the
    sync browser driver runs an event loop in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    from streamex.rest_client import RestClient

    assert exchange.api_url is not None
    api_url = exchange.api_url

    async def fetch() -> list[Any]:
        async with RestClient(api_url, *exchange.accounts[account]) as rest:
            return list(await rest.orders(symbol, limit=50))

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


@pytest.mark.browser
def test_order_history_follows_the_accounts_orders_from_the_rest_api(
        watch: PageWatch, tmp_path: Path) -> None:
    """The Order history panel lists the account's orders of the selected market as the
    REST API's ``allOrders`` states them, newest first: a placed order as NEW, then
    CANCELED once canceled, a filled one FILLED with its quote amount; another market
    its own; another account's orders never; signed in the page (the secret is in no
    request); empty once logged off."""
    with running_exchange(tmp_path / "up") as fresh:
        assert fresh.api_url is not None, "streamex up runs no REST API"
        requests: list[Any] = []
        watch.page.on("request", lambda r: requests.append(r))
        open_page(watch, fresh, "ETH-USD")
        assert "log on" in str(watch.page.text_content("#history-state"))
        assert watch.page.input_value("#api-url") == fresh.api_url
        log_on(watch, fresh, "demo1")
        wait_for(lambda: watch.page.get_attribute("#order-history", "data-state") == "ok", 10,
                 "the (empty) order history", lambda: watch.page.text_content("#history-state"))
        assert history_rows(watch) == {}
        assert "no orders" in str(watch.page.text_content("#history-state"))

        resting = page_place(watch, "buy", "0.100", "41.11")
        wait_for(lambda: history_row(watch, resting) == ("NEW", "BUY", "41.11", "0.100",
                                                         "0.000"),
                 10, "the resting order in the history", lambda: history_rows(watch))
        watch.page.click(f"[data-testid=cancel-order][data-order-id='{resting}']")
        wait_for(lambda: history_row(watch, resting) == ("CANCELED", "BUY", "41.11", "0.100",
                                                         "0.000"),
                 10, "the order canceled in the history", lambda: history_rows(watch))

        sold = page_place(watch, "sell", "0.300", "63.20")
        with OrderSession(fresh.gateway_url, *fresh.accounts["demo2"]) as taker:
            taker.report(taker.place("ETH-USD", "buy", "0.300", "63.20"), "trade")
            theirs = taker.place("ETH-USD", "buy", "0.010", "40.00")  # another account's
        wait_for(lambda: history_row(watch, sold) == ("FILLED", "SELL", "63.20", "0.300",
                                                      "0.300"),
                 10, "the filled order in the history", lambda: history_rows(watch))
        rows = history_rows(watch)
        assert Decimal(rows[sold]["quote"]) == Decimal("18.96")
        assert theirs not in rows
        # Newest first, and exactly what the REST API says, field for field.
        listed = watch.page.eval_on_selector_all("[data-testid=history-row]",
                                                 "rows => rows.map(r => r.dataset.orderId)")
        assert listed == [sold, resting]
        api = {o.streamex_order_id: o for o in rest_orders(fresh, "demo1", "ETH-USD")}
        assert set(api) == set(rows)
        for order_id, row in rows.items():
            o = api[order_id]
            assert (row["restOrderId"], row["status"], row["type"], row["price"], row["qty"],
                    row["filled"], row["quote"]) == (
                str(o.order_id), o.status, o.type, o.price, o.orig_qty, o.executed_qty,
                o.cummulative_quote_qty)

        # Another market: its own orders (none yet), then back.
        watch.page.select_option("#market-select", "BTC-USD")
        wait_for(lambda: history_rows(watch) == {}
                 and watch.page.get_attribute("#order-history", "data-state") == "ok",
                 10, "BTC-USD's (empty) history", lambda: history_rows(watch))
        watch.page.select_option("#market-select", "ETH-USD")
        wait_for(lambda: set(history_rows(watch)) == {sold, resting}, 10,
                 "ETH-USD's history again", lambda: history_rows(watch))

        # Signed in the page: the key in X-MBX-APIKEY, the secret in no request.
        api_key, secret = fresh.accounts["demo1"]
        rest = [r for r in requests if r.url.startswith(fresh.api_url)
                and r.method == "GET" and "/api/v3/allOrders" in r.url]
        assert rest, "the page made no allOrders request"
        for r in rest:
            assert "signature=" in r.url and secret not in r.url
            assert r.headers.get("x-mbx-apikey") == api_key
            assert secret not in json.dumps(r.headers)

        watch.page.click("#logoff-btn")
        wait_for(lambda: history_rows(watch) == {}
                 and "log on" in str(watch.page.text_content("#history-state")),
                 10, "no history once logged off", lambda: history_rows(watch))
    assert watch.errors == []


@pytest.mark.browser
def test_order_history_says_when_the_rest_api_is_unreachable(
        watch: PageWatch, exchange: Exchange) -> None:
    """A REST URL nothing listens on: the panel says so with a code; order entry goes on."""
    dead = f"http://127.0.0.1:{free_port()}"
    watch.page.goto(f"{exchange.page_url}?gateway={exchange.gateway_url}&symbol=ETH-USD"
                    f"&api={dead}")
    wait_for(lambda: page_state(watch) == "live", 10, "the feed to be live")
    log_on(watch, exchange, "demo2")
    watch.page.wait_for_selector("#history-error[data-code=UNREACHABLE]")
    assert dead in str(watch.page.text_content("#history-error"))
    order_id = page_place(watch, "buy", "0.010", "40.01")
    watch.page.wait_for_selector(f"[data-testid=open-order-row][data-order-id='{order_id}']")
    # A failed fetch logs a console error in Chromium; nothing else may have gone wrong.
    assert [e for e in watch.errors if "ERR_CONNECTION_REFUSED" not in e] == []
