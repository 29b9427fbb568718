"""Refusals of ``streamex api``: Binance's code and HTTP status each, and the connection lives on.

Every request of a test goes over one keep-alive HTTP connection
(``http.client``) from a loopback address of the test's own (127.0.0.N), so the
per-IP rate limit of one test never touches another's; after each refusal
the same socket serves the next request. The exchange has a low per-account
order rate (:data:`ORDER_RATE`) to show -1015.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from api_helpers import ANN, BEN, CAT, DAN, EVE, POOR, Exchange, make_config

from contract.settings import Account

ORDER_RATE = 10
IP_RATE = 100


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    config = make_config(account_rate=float(ORDER_RATE), account_burst=ORDER_RATE,
                         connection_rate=float(IP_RATE), connection_burst=IP_RATE)
    running = Exchange(tmp_path_factory.mktemp("api-errors"), config).start()
    try:
        yield running
    finally:
        running.stop()


class Connection:
    """One keep-alive connection from ``127.0.0.<n>``; fails if the server drops it."""

    def __init__(self, url: str, n: int) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.http = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30,
                                               source_address=(f"127.0.0.{n}", 0))
        self.sock: Any = None

    def send(self, method: str, target: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
        self.http.request(method, target, body=body, headers=headers or {})
        response = self.http.getresponse()
        data = response.read()
        if self.sock is None:
            self.sock = self.http.sock
        assert self.http.sock is self.sock, "the server closed the connection"
        assert (response.getheader("Connection") or "").lower() != "close"
        return response.status, json.loads(data), response

    def get(self, path: str, **params: Any) -> tuple[int, Any]:
        status, body, _ = self.send("GET", f"{path}?{urlencode(params)}")
        return status, body

    def signed(self, account: Account, method: str, path: str, params: dict[str, Any], *,
               secret: str | None = None, timestamp: int | None = None,
               key: str | None = "") -> tuple[int, Any, http.client.HTTPResponse]:
        """Binance's SIGNED request: HMAC-SHA256 of the form body (POST) or query."""
        stamp = int(time.time() * 1000) if timestamp is None else timestamp
        payload = urlencode({**{k: v for k, v in params.items() if v is not None},
                             "timestamp": stamp})
        signature = hmac.new((secret or account.secret).encode(), payload.encode(),
                             hashlib.sha256).hexdigest()
        payload += f"&signature={signature}"
        headers = {} if key is None else {"X-MBX-APIKEY": key or account.api_key}
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return self.send(method, path, payload.encode(), headers)
        return self.send(method, f"{path}?{payload}", None, headers)

    def ok(self) -> None:
        """The connection still serves a request."""
        assert self.get("/api/v3/ping") == (200, {})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def connect(exchange: Exchange) -> Iterator[Any]:
    opened: list[Connection] = []

    def open_one(n: int) -> Connection:
        opened.append(Connection(exchange.url, n))
        return opened[-1]

    yield open_one
    for c in opened:
        c.close()


LIMIT_BUY = {"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.01", "price": "1000.00"}


def test_authentication_refusals(connect: Any) -> None:
    c = connect(2)
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {}, secret="wrong-secret")
    assert (status, body) == (400, {"code": -1022,
                                    "msg": "Signature for this request is not valid."})
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {},
                               timestamp=int(time.time() * 1000) - 60_000)
    assert (status, body["code"]) == (400, -1021)
    assert body["msg"].startswith("Timestamp for this request is outside of the recvWindow.")
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {},
                               timestamp=int(time.time() * 1000) + 10_000)
    assert (status, body["code"]) == (400, -1021)
    # A wider recvWindow admits the same age; one above [api] max_recv_window_ms is refused.
    status, _, _ = c.signed(ANN, "GET", "/api/v3/account", {"recvWindow": 59_000},
                            timestamp=int(time.time() * 1000) - 30_000)
    assert status == 200
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {"recvWindow": 60_001})
    assert (status, body["code"]) == (400, -1102)
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {}, key=None)
    assert (status, body) == (401, {"code": -2014, "msg": "API-key format invalid."})
    status, body, _ = c.signed(ANN, "GET", "/api/v3/account", {}, key="nobody-has-this-key")
    assert (status, body) == (401, {"code": -2015, "msg": "Invalid API-key, IP, or "
                                                          "permissions for action."})
    status, body, _ = c.send("GET", "/api/v3/account?timestamp=1",
                             headers={"X-MBX-APIKEY": ANN.api_key})
    assert (status, body["code"]) == (400, -1102)  # no signature
    assert "'signature'" in body["msg"]
    c.ok()


def test_parameter_refusals(connect: Any) -> None:
    c = connect(3)
    assert c.get("/api/v3/depth", symbol="NOPE") == (400, {"code": -1121,
                                                          "msg": "Invalid symbol."})
    assert c.get("/api/v3/depth")[1]["code"] == -1102
    assert c.get("/api/v3/depth", symbol="BTCUSD", limit="ten")[1]["code"] == -1100
    assert c.get("/api/v3/depth", symbol="BTCUSD", color="red")[1]["code"] == -1104
    status, body, _ = c.send("GET", "/api/v3/depth?symbol=BTCUSD&symbol=ETHUSD")
    assert (status, body["code"]) == (400, -1101)
    status, body, _ = c.send("GET", "/api/v3/depth?symbol=%ff%fe")
    assert (status, body["code"]) == (400, -1100)
    status, body, _ = c.send("GET", "/api/v3/depth?symbol=" + "B" * 20_000)
    assert (status, body["code"]) == (400, -1121)
    status, body, _ = c.send("POST", "/api/v3/order", b"x=" + b"y" * 100_000,
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["code"]) == (413, -1020)
    status, body, _ = c.send("GET", "/api/v3/no-such-endpoint")
    assert (status, body["code"]) == (404, -1020)
    status, body, _ = c.send("PUT", "/api/v3/ping")
    assert (status, body["code"]) == (405, -1020)
    c.ok()


def test_order_refusals(connect: Any) -> None:
    c = connect(4)

    def place(**changes: Any) -> tuple[int, Any]:
        params = {k: v for k, v in {**LIMIT_BUY, **changes}.items() if v is not None}
        status, body, _ = c.signed(BEN, "POST", "/api/v3/order", params)
        return status, body

    assert place(symbol="NOPE") == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert place(price=None)[1] == {"code": -1102, "msg": "Mandatory parameter 'price' was "
                                    "not sent, was empty/null, or malformed."}
    assert place(timeInForce=None)[1]["code"] == -1102
    assert place(side="UP") == (400, {"code": -1117, "msg": "Invalid side."})
    assert place(type="FANCY") == (400, {"code": -1116, "msg": "Invalid orderType."})
    assert place(timeInForce="DAY") == (400, {"code": -1115, "msg": "Invalid timeInForce."})
    assert place(quantity="1e3")[1]["code"] == -1100
    assert place(quantity="-1")[1]["code"] == -1100
    status, body = place(quantity="0.00001")
    assert (status, body["code"]) == (400, -1013)
    assert body["msg"].startswith("Filter failure: LOT_SIZE")
    assert place(price="1000.001")[1]["msg"].startswith("Filter failure: PRICE_FILTER")
    assert place(newClientOrderId="has spaces")[1]["code"] == -1100
    assert place(newClientOrderId="")[1]["code"] == -1118
    assert place(selfTradePreventionMode="DECREMENT")[1]["code"] == -1130
    assert place(type="MARKET", timeInForce=None, price=None, quantity=None)[1]["code"] == \
        -1102
    assert place(type="MARKET", timeInForce=None, price=None)[1]["code"] == -1106
    c.ok()


def test_stop_iceberg_and_gtd_refusals(connect: Any) -> None:
    """Binance's rules for stopPrice, icebergQty and timeInForce; GTD as Binance's futures
    API takes it (goodTillDate, ms). Nothing here reaches a market."""
    c = connect(9)
    future = int(time.time() * 1000) + 3_600_000

    def place(**changes: Any) -> tuple[int, Any]:
        params = {k: v for k, v in {**LIMIT_BUY, **changes}.items() if v is not None}
        status, body, _ = c.signed(BEN, "POST", "/api/v3/order", params)
        return status, body

    assert place(type="STOP_LOSS_LIMIT") == (400, {
        "code": -1102, "msg": "Mandatory parameter 'stopPrice' was not sent, was empty/null, "
                              "or malformed."})
    assert place(stopPrice="900.00") == (400, {
        "code": -1106, "msg": "Parameter 'stopPrice' sent when not required."})
    assert place(type="STOP_LOSS_LIMIT", stopPrice="900", timeInForce=None)[1]["code"] == \
        -1102  # a *_LIMIT takes LIMIT's timeInForce
    assert place(type="TAKE_PROFIT", stopPrice="900", timeInForce=None)[1]["code"] == \
        -1106  # no price on a market stop
    assert place(type="STOP_LOSS", stopPrice="900", price=None)[1]["code"] == -1114  # GTC
    assert place(type="STOP_LOSS", side="SELL", stopPrice="900", price=None,
                 timeInForce="GTD")[1] == {
        "code": -1102, "msg": "Mandatory parameter 'goodTillDate' was not sent, was "
                              "empty/null, or malformed."}
    status, body = place(type="STOP_LOSS_LIMIT", stopPrice="900.001")
    assert (status, body["code"]) == (400, -1013)
    assert body["msg"].startswith("Filter failure: PRICE_FILTER (stopPrice")
    assert place(timeInForce="GTD")[1]["code"] == -1102
    assert place(goodTillDate=future)[1]["code"] == -1106
    status, body = place(timeInForce="GTD", goodTillDate=1_000)
    assert (status, body["code"]) == (400, -1130)
    assert body["msg"].startswith("Data sent for parameter 'goodTillDate' is not valid.")
    assert place(type="LIMIT_MAKER", timeInForce="IOC")[1]["code"] == -1114
    status, body = place(timeInForce="IOC", icebergQty="0.001")
    assert (status, body["code"]) == (400, -1013)
    assert body["msg"].startswith("Unsupported order combination")
    assert place(type="MARKET", side="SELL", timeInForce=None, price=None,
                 icebergQty="0.001")[1] == {
        "code": -1106, "msg": "Parameter 'icebergQty' sent when not required."}
    status, body = place(icebergQty="0.02")  # more than the quantity
    assert (status, body["code"]) == (400, -1013)
    assert body["msg"].startswith("Filter failure: LOT_SIZE (icebergQty")
    assert place(icebergQty="0.00001")[1]["msg"].startswith("Filter failure: LOT_SIZE")
    assert place(trailingDelta="100")[1]["code"] == -2010
    status, body, _ = c.signed(BEN, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"})
    assert (status, body) == (200, [])  # none of them was placed
    c.ok()


def test_business_refusals(connect: Any) -> None:
    c = connect(5)
    status, body, _ = c.signed(POOR, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "quantity": "1", "price": "30000.00"})
    assert (status, body) == (400, {"code": -2010, "msg": "Account has insufficient balance "
                                                          "for requested action."})
    status, body, _ = c.signed(CAT, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "side": "SELL",
                                "price": "3000.00", "newClientOrderId": "cat-1"})
    assert (status, body["status"]) == (200, "NEW")
    status, body, _ = c.signed(CAT, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "side": "SELL",
                                "price": "3001.00", "newClientOrderId": "cat-1"})
    assert (status, body) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    status, body, _ = c.signed(DAN, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "type": "LIMIT_MAKER",
                                "price": "3000.00"})
    assert status == 400 and body["code"] == -1114  # LIMIT_MAKER takes no timeInForce
    status, body, _ = c.signed(DAN, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "type": "LIMIT_MAKER",
                                "timeInForce": None, "price": "3000.00",
                                "newOrderRespType": "RESULT"})
    assert (status, body) == (400, {"code": -2010, "msg": "Order would immediately match "
                                                          "and take."})
    # With ACK (LIMIT_MAKER's default) the engine's refusal is the order's status.
    status, body, _ = c.signed(DAN, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "type": "LIMIT_MAKER",
                                "timeInForce": None, "price": "3000.00"})
    assert status == 200 and set(body) == {"symbol", "orderId", "orderListId",
                                           "clientOrderId", "transactTime"}
    status, queried, _ = c.signed(DAN, "GET", "/api/v3/order",
                                  {"symbol": "ETHUSD", "orderId": body["orderId"]})
    assert (status, queried["status"], queried["type"]) == (200, "REJECTED", "LIMIT")
    status, body, _ = c.signed(DAN, "POST", "/api/v3/order",
                               {**LIMIT_BUY, "symbol": "ETHUSD", "price": "2999.00",
                                "timeInForce": "FOK", "quantity": "5"})
    assert (status, body["status"], body["executedQty"]) == (200, "EXPIRED", "0.0000")
    status, body, _ = c.signed(DAN, "DELETE", "/api/v3/order",
                               {"symbol": "ETHUSD", "origClientOrderId": "cat-1"})
    assert (status, body) == (400, {"code": -2011, "msg": "Unknown order sent."})
    status, body, _ = c.signed(DAN, "GET", "/api/v3/order",
                               {"symbol": "ETHUSD", "orderId": 915856639850971136})
    assert (status, body) == (400, {"code": -2013, "msg": "Order does not exist."})
    status, body, _ = c.signed(DAN, "GET", "/api/v3/order", {"symbol": "ETHUSD"})
    assert (status, body["code"]) == (400, -1102)
    c.ok()


def test_order_rate_limit_answers_429_with_retry_after(connect: Any) -> None:
    c = connect(6)
    statuses = []
    for i in range(ORDER_RATE + 5):
        status, body, response = c.signed(EVE, "POST", "/api/v3/order",
                                          {**LIMIT_BUY, "price": f"{100 + i}.00",
                                           "newOrderRespType": "ACK"})
        statuses.append(status)
        if status == 429:
            assert body["code"] == -1015
            assert int(response.getheader("Retry-After") or 0) >= 1
            break
    assert statuses[-1] == 429 and statuses[:-1] == [200] * (len(statuses) - 1)
    status, body, _ = c.signed(EVE, "GET", "/api/v3/openOrders", {"symbol": "BTCUSD"})
    assert status == 200 and len(body) == len(statuses) - 1  # queries are not orders
    c.ok()


def test_ip_rate_limit_answers_429_with_retry_after(connect: Any) -> None:
    c = connect(7)
    for _ in range(IP_RATE * 3):
        status, body, response = c.send("GET", "/api/v3/ping")
        if status == 429:
            break
    assert (status, body["code"]) == (429, -1003)
    assert int(response.getheader("Retry-After") or 0) >= 1
    assert connect(8).get("/api/v3/ping") == (200, {})  # another address is not limited
