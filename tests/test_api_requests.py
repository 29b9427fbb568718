"""``streamex api`` with plain ``requests`` + ``hmac``, written from Binance's public docs only.

The client side here follows the Binance spot REST API documentation
(binance-spot-api-docs, ``rest-api.md``): a SIGNED request sends
``timestamp``, an optional ``recvWindow`` and ``signature``, the lowercase hex
HMAC-SHA256, keyed by the secret, of ``totalParams``: the query string
concatenated without separator with the ``application/x-www-form-urlencoded``
body; the key travels in the ``X-MBX-APIKEY`` header. Paging is Binance's:
``fromId``/``orderId`` from an id, ``startTime``/``endTime`` within a time
range, ``limit``. The client is ``api_helpers.Binance``; the exchange is real
processes (``api_helpers.Exchange``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal

import pytest
import redis
import requests
from api_helpers import ANN, BEN, CAT, DAN, EVE, FAY, GUS, HAL, Binance, Exchange
from timing import wait_until, wait_until_async

from contract.commands import Place
from contract.risk import ToMarket, encode_risk_command, risk_keys, risk_shard
from contract.streams import IN_FIELD
from streamex.rest_client import RestClient, RestError


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    running = Exchange(tmp_path_factory.mktemp("api-requests")).start()
    try:
        yield running
    finally:
        running.stop()
        for client in Binance.made:
            client.http.close()


def _balance(client: Binance, asset: str) -> tuple[str, str]:
    balances = client.signed("GET", "/api/v3/account")["balances"]
    entry = next(b for b in balances if b["asset"] == asset)
    return entry["free"], entry["locked"]


def _settled(client: Binance, asset: str, expected: tuple[str, str]) -> None:
    """The balance becomes ``expected`` (free, locked): the risk stage commits holds and
    settles fills beside the market's reports, so a read right after may trail them."""
    wait_until(lambda: _balance(client, asset) == expected, what=f"{asset} {expected}")


def test_an_order_placed_queried_and_canceled_with_signed_requests(exchange: Exchange) -> None:
    ann = Binance(exchange.url, ANN)
    # The docs' mixed example: some parameters in the query string, the rest in the body.
    reply = ann.call("POST", "/api/v3/order",
                     query={"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT",
                            "timeInForce": "GTC"},
                     body={"quantity": "0.5", "price": "25000.00", "recvWindow": 5000,
                           "newClientOrderId": "ann-first-1"})
    assert reply.status_code == 200, reply.text
    placed = reply.json()
    assert {k: placed[k] for k in ("symbol", "clientOrderId", "price", "origQty",
                                   "executedQty", "status", "timeInForce", "type", "side",
                                   "fills")} == {
        "symbol": "BTCUSD", "clientOrderId": "ann-first-1", "price": "25000.00",
        "origQty": "0.5000", "executedQty": "0.0000", "status": "NEW", "timeInForce": "GTC",
        "type": "LIMIT", "side": "BUY", "fills": []}
    order_id = placed["orderId"]
    assert isinstance(order_id, int) and order_id > 0
    # Held: 0.5 x 25,000 = 12,500 USD plus the 20 bps taker fee the hold covers.
    _settled(ann, "USD", ("987475.000000", "12525.000000"))

    by_id = ann.signed("GET", "/api/v3/order", symbol="BTCUSD", orderId=order_id)
    by_client = ann.signed("GET", "/api/v3/order", symbol="BTCUSD",
                           origClientOrderId="ann-first-1")
    assert by_id == by_client
    assert (by_id["orderId"], by_id["status"], by_id["isWorking"], by_id["time"]) == \
        (order_id, "NEW", True, placed["workingTime"])
    assert [o["orderId"] for o in ann.signed("GET", "/api/v3/openOrders",
                                             symbol="BTCUSD")] == [order_id]
    assert [o["orderId"] for o in ann.signed("GET", "/api/v3/openOrders")] == [order_id]

    canceled = ann.signed("DELETE", "/api/v3/order", symbol="BTCUSD", orderId=order_id)
    assert (canceled["orderId"], canceled["origClientOrderId"], canceled["status"],
            canceled["executedQty"]) == (order_id, "ann-first-1", "CANCELED", "0.0000")
    assert ann.signed("GET", "/api/v3/openOrders", symbol="BTCUSD") == []
    after = ann.signed("GET", "/api/v3/order", symbol="BTCUSD", orderId=order_id)
    assert (after["status"], after["clientOrderId"]) == ("CANCELED", "ann-first-1")
    _settled(ann, "USD", ("1000000.000000", "0.000000"))
    again = ann.call("DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": order_id})
    assert (again.status_code, again.json()) == \
        (400, {"code": -2011, "msg": "Unknown order sent."})

    account = ann.signed("GET", "/api/v3/account", omitZeroBalances="true")
    assert account["commissionRates"] == {"maker": "0.00100000", "taker": "0.00200000",
                                          "buyer": "0.00000000", "seller": "0.00000000"}
    assert (account["makerCommission"], account["takerCommission"], account["canTrade"],
            account["accountType"]) == (10, 20, True, "SPOT")
    assert {b["asset"] for b in account["balances"]} == \
        {"USD", "BTC", "ETH", "SOL", "ADA", "DOT", "XRP"}


def test_fills_fees_and_binance_paging_of_orders_and_trades(exchange: Exchange) -> None:
    cat, dan = Binance(exchange.url, CAT), Binance(exchange.url, DAN)
    sells = [cat.order(symbol="ETHUSD", side="SELL", type="LIMIT", timeInForce="GTC",
                       quantity="1", price=f"{2000 + i}.00") for i in range(5)]
    assert [s["status"] for s in sells] == ["NEW"] * 5
    # One buy takes all five levels: five fills, each at its maker's price.
    taken = dan.order(symbol="ETHUSD", side="BUY", type="LIMIT", timeInForce="IOC",
                      quantity="5", price="2004.00", newOrderRespType="FULL")
    assert (taken["status"], taken["executedQty"], taken["cummulativeQuoteQty"]) == \
        ("FILLED", "5.0000", "10010.000000")
    fills = taken["fills"]
    assert [(f["price"], f["qty"], f["commission"], f["commissionAsset"]) for f in fills] == \
        [(f"{2000 + i}.00", "1.0000", f"{(2000 + i) * 0.002:.6f}", "USD") for i in range(5)]
    trade_ids = [f["tradeId"] for f in fills]
    assert trade_ids == list(range(trade_ids[0], trade_ids[0] + 5))
    result = dan.order(symbol="ETHUSD", side="BUY", type="LIMIT", timeInForce="GTC",
                       quantity="1", price="1000.00", newOrderRespType="RESULT")
    assert "fills" not in result and result["status"] == "NEW"
    ack = dan.order(symbol="ETHUSD", side="BUY", type="LIMIT", timeInForce="GTC",
                    quantity="1", price="999.00", newOrderRespType="ACK")
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    # Read-your-writes: what this service acknowledged is there when next asked.
    assert [o["orderId"] for o in dan.signed("GET", "/api/v3/openOrders",
                                             symbol="ETHUSD")] == \
        [result["orderId"], ack["orderId"]]

    # allOrders: ascending orderId; from orderId; a time range; limit.
    mine = cat.signed("GET", "/api/v3/allOrders", symbol="ETHUSD")
    assert [o["orderId"] for o in mine] == [s["orderId"] for s in sells]
    assert [o["status"] for o in mine] == ["FILLED"] * 5
    assert [o["orderId"] for o in cat.signed("GET", "/api/v3/allOrders", symbol="ETHUSD",
                                            orderId=sells[2]["orderId"], limit=2)] == \
        [sells[2]["orderId"], sells[3]["orderId"]]
    assert [o["orderId"] for o in cat.signed("GET", "/api/v3/allOrders", symbol="ETHUSD",
                                            limit=2)] == \
        [sells[3]["orderId"], sells[4]["orderId"]]  # without from: the latest
    # An order's time is when it was received (its workingTime when it rested at once).
    start, end = sells[1]["workingTime"], sells[3]["workingTime"]
    ranged = cat.signed("GET", "/api/v3/allOrders", symbol="ETHUSD", startTime=start,
                        endTime=end)
    assert {s["orderId"] for s in sells[1:4]} <= {o["orderId"] for o in ranged}
    assert all(start <= o["time"] <= end for o in ranged)
    too_long = cat.call("GET", "/api/v3/allOrders",
                        {"symbol": "ETHUSD", "startTime": 0, "endTime": 86_400_001})
    assert too_long.json()["code"] == -1127

    # myTrades: the maker's fills with its 10 bps commission; fromId and limit.
    trades = cat.signed("GET", "/api/v3/myTrades", symbol="ETHUSD")
    assert [(t["id"], t["price"], t["qty"], t["commission"], t["isBuyer"], t["isMaker"])
            for t in trades] == [(trade_ids[i], f"{2000 + i}.00", "1.0000",
                                  f"{(2000 + i) * 0.001:.6f}", False, True)
                                 for i in range(5)]
    assert [t["orderId"] for t in trades] == [s["orderId"] for s in sells]
    assert [t["id"] for t in cat.signed("GET", "/api/v3/myTrades", symbol="ETHUSD",
                                       fromId=trade_ids[3])] == trade_ids[3:]
    assert [t["id"] for t in cat.signed("GET", "/api/v3/myTrades", symbol="ETHUSD",
                                       limit=2)] == trade_ids[3:]
    assert [t["id"] for t in dan.signed("GET", "/api/v3/myTrades", symbol="ETHUSD",
                                       orderId=taken["orderId"])] == trade_ids
    # Balances after the fills: cat sold 5 ETH for 10,010 less 10.01 of fees.
    _settled(cat, "USD", ("1009999.990000", "0.000000"))
    _settled(cat, "ETH", ("995.0000", "0.0000"))

    # Cancel all of dan's open orders in the market at once.
    canceled = dan.signed("DELETE", "/api/v3/openOrders", symbol="ETHUSD")
    assert sorted(o["orderId"] for o in canceled) == sorted([result["orderId"],
                                                             ack["orderId"]])
    assert {o["status"] for o in canceled} == {"CANCELED"}
    none_left = dan.call("DELETE", "/api/v3/openOrders", {"symbol": "ETHUSD"})
    assert none_left.json() == {"code": -2011, "msg": "Unknown order sent."}


def test_public_trades_agg_trades_and_klines_page_like_binance(exchange: Exchange) -> None:
    eve, fay = Binance(exchange.url, EVE), Binance(exchange.url, FAY)
    for i in range(6):
        eve.order(symbol="SOLUSD", side="SELL", type="LIMIT", timeInForce="GTC",
                  quantity="2", price=f"{150 + i}.00")
        fay.order(symbol="SOLUSD", side="BUY", type="MARKET", quoteOrderQty="1000")
    public = Binance(exchange.url, EVE)
    trades = wait_until(lambda: (t := public.public("/api/v3/trades", symbol="SOLUSD"))
                        and len(t) >= 6 and t, what="the trades in history")
    assert [t["isBuyerMaker"] for t in trades] == [False] * len(trades)
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert [t["id"] for t in public.public("/api/v3/trades", symbol="SOLUSD",
                                           limit=2)] == ids[-2:]
    assert [t["id"] for t in public.public("/api/v3/historicalTrades", symbol="SOLUSD",
                                           fromId=ids[1], limit=2)] == ids[1:3]
    agg = public.public("/api/v3/aggTrades", symbol="SOLUSD", fromId=ids[2], limit=3)
    assert [(a["a"], a["f"], a["l"]) for a in agg] == [(i, i, i) for i in ids[2:5]]
    assert [(a["p"], a["q"]) for a in agg] == [(t["price"], t["qty"]) for t in trades[2:5]]
    first_ts, last_ts = trades[0]["time"], trades[-1]["time"]
    in_range = public.public("/api/v3/aggTrades", symbol="SOLUSD", startTime=first_ts,
                             endTime=last_ts)
    assert [a["a"] for a in in_range] == ids
    assert public.public("/api/v3/aggTrades", symbol="SOLUSD", startTime=last_ts + 1) == []

    klines = public.public("/api/v3/klines", symbol="SOLUSD", interval="1m")
    assert sum(k[8] for k in klines) == len(trades)
    assert klines[0][1] == trades[0]["price"] and klines[-1][4] == trades[-1]["price"]
    assert all(k[6] == k[0] + 59_999 for k in klines)
    day = public.public("/api/v3/klines", symbol="SOLUSD", interval="1d")
    assert len(day) == 1 and day[0][0] % 86_400_000 == 0
    assert (day[0][2], day[0][3]) == (max(t["price"] for t in trades),
                                      min(t["price"] for t in trades))
    assert public.public("/api/v3/klines", symbol="SOLUSD", interval="1m",
                         startTime=klines[-1][0]) == klines[-1:]
    assert public.public("/api/v3/klines", symbol="SOLUSD", interval="1m",
                         endTime=klines[0][0], limit=1) == klines[:1]
    bad = requests.get(f"{exchange.url}/api/v3/klines",
                       params={"symbol": "SOLUSD", "interval": "7m"}, timeout=30)
    assert (bad.status_code, bad.json()["code"]) == (400, -1120)


def test_depth_serves_up_to_5000_levels(exchange: Exchange) -> None:
    """5,100 resting bids (entered straight into the risk stage's input stream)."""
    config = exchange.config
    shard = risk_shard(HAL.id, config.risk.shards)
    client = redis.Redis.from_url(exchange.redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for ticks in range(1, 5101):
            place = Place(HAL.id, "buy", "limit", 10_000, ticks)  # 1 XRP at 0.01 x ticks
            pipe.xadd(risk_keys(shard).input,
                      {IN_FIELD: encode_risk_command(ToMarket("XRP-USD", place))})
        pipe.execute()
    finally:
        client.close()
    hal = Binance(exchange.url, HAL)
    book = wait_until(lambda: (d := hal.public("/api/v3/depth", symbol="XRPUSD", limit=5000))
                      and len(d["bids"]) == 5000 and d, what="5,100 bids on the book")
    assert book["bids"][0] == ["51.00", "1.0000"] and book["bids"][-1] == ["1.01", "1.0000"]
    assert book["asks"] == []
    assert len(hal.public("/api/v3/depth", symbol="XRPUSD", limit=10_000)["bids"]) == 5000
    assert len(hal.public("/api/v3/depth", symbol="XRPUSD")["bids"]) == 100
    assert book["lastUpdateId"] >= 5100


def test_tickers_for_one_symbol_and_all(exchange: Exchange) -> None:
    gus = Binance(exchange.url, GUS)
    gus.order(symbol="ADAUSD", side="SELL", type="LIMIT", timeInForce="GTC", quantity="10",
              price="0.55")
    gus.order(symbol="ADAUSD", side="BUY", type="LIMIT", timeInForce="GTC", quantity="7",
              price="0.45")
    book = gus.public("/api/v3/ticker/bookTicker", symbol="ADAUSD")
    assert book == {"symbol": "ADAUSD", "bidPrice": "0.45", "bidQty": "7.0000",
                    "askPrice": "0.55", "askQty": "10.0000"}
    every = gus.public("/api/v3/ticker/bookTicker")
    assert isinstance(every, list) and book in every and len(every) == 6
    some = gus.public("/api/v3/ticker/price", symbols='["ADAUSD","DOTUSD"]')
    assert some == [{"symbol": "ADAUSD", "price": "0.00"}, {"symbol": "DOTUSD",
                                                           "price": "0.00"}]
    day = gus.public("/api/v3/ticker/24hr", symbol="ADAUSD")
    assert (day["count"], day["volume"], day["firstId"], day["lastId"], day["bidPrice"],
            day["askPrice"]) == (0, "0.0000", -1, -1, "0.45", "0.55")
    mini = gus.public("/api/v3/ticker/24hr", symbols='["ADAUSD"]', type="MINI")
    assert isinstance(mini, list) and "bidPrice" not in mini[0]

    info = gus.public("/api/v3/exchangeInfo", symbol="ADAUSD")
    (symbol,) = info["symbols"]
    assert (symbol["baseAsset"], symbol["quoteAsset"], symbol["baseAssetPrecision"],
            symbol["quoteAssetPrecision"], symbol["permissionSets"]) == \
        ("ADA", "USD", 4, 6, [["SPOT"]])
    filters = {f["filterType"]: f for f in symbol["filters"]}
    assert filters["PRICE_FILTER"] == {"filterType": "PRICE_FILTER", "minPrice": "0.01",
                                       "maxPrice": "1000000", "tickSize": "0.01"}
    assert filters["LOT_SIZE"] == {"filterType": "LOT_SIZE", "minQty": "0.0001",
                                   "maxQty": "1000", "stepSize": "0.0001"}
    assert filters["NOTIONAL"]["minNotional"] == "0.000001"
    assert len(gus.public("/api/v3/exchangeInfo")["symbols"]) == 6
    assert gus.public("/api/v3/ping") == {}
    assert abs(gus.public("/api/v3/time")["serverTime"] - time.time() * 1000) < 5000


def test_the_web_page_may_call_get_endpoints_with_an_api_key(exchange: Exchange) -> None:
    origin = f"http://127.0.0.1:{exchange.config.marketdata.port}"
    preflight = requests.options(f"{exchange.url}/api/v3/account", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-mbx-apikey"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "X-MBX-APIKEY" in preflight.headers["Access-Control-Allow-Headers"]
    depth = requests.get(f"{exchange.url}/api/v3/depth", params={"symbol": "BTCUSD"},
                         headers={"Origin": origin}, timeout=30)
    assert depth.headers["Access-Control-Allow-Origin"] == origin
    other = requests.get(f"{exchange.url}/api/v3/depth", params={"symbol": "BTCUSD"},
                         headers={"Origin": "http://evil.example"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in other.headers


async def _sdk_round_trip(url: str) -> None:
    async with RestClient(url, BEN.api_key, BEN.secret) as rest, \
            RestClient(url, DAN.api_key, DAN.secret) as other:
        sell = await rest.place("DOT-USD", "sell", "limit", "3", Decimal("7.25"),
                                client_order_id="ben-dot-1")
        assert (sell.status, sell.orig_qty, sell.client_order_id) == ("NEW", "3.0000",
                                                                      "ben-dot-1")
        bought = await other.place("DOT-USD", "buy", "market", quote_qty="10.00")
        assert bought.status in ("FILLED", "EXPIRED") and bought.fills
        fill = bought.fills[0]
        assert (fill.price, fill.commission_asset) == ("7.25", "USD")
        order = await rest.order("DOT-USD", sell.order_id)
        assert (order.status, order.executed_qty) == ("PARTIALLY_FILLED", bought.executed_qty)
        assert order.streamex_order_id and order.order_id == sell.order_id
        by_client = await rest.order("DOT-USD", client_order_id="ben-dot-1")
        assert by_client.order_id == sell.order_id
        assert [o.order_id for o in await rest.open_orders("DOT-USD")] == [sell.order_id]
        canceled = await rest.cancel("DOT-USD", sell.order_id)
        assert canceled.status == "CANCELED"
        assert [(o.order_id, o.status) for o in await rest.orders("DOT-USD")] == \
            [(sell.order_id, "CANCELED")]
        fills = await rest.my_trades("DOT-USD")
        fee = (Decimal(fill.qty) * Decimal("7.25") * Decimal("0.001")).quantize(
            Decimal("0.000001"), rounding=ROUND_CEILING)  # 10 bps, rounded up to the unit
        assert [(t.order_id, t.price, t.is_maker, t.commission) for t in fills] == \
            [(sell.order_id, "7.25", True, str(fee))]
        candles = await wait_until_async(lambda: rest.candles("DOT-USD", "1m"),
                                         what="the candle in history")
        assert (candles[-1].close, candles[-1].volume) == ("7.25", fill.qty)
        account = await rest.account()
        assert (account.maker_commission, account.taker_commission) == (10, 20)
        with pytest.raises(RestError) as refused:
            await rest.order("DOT-USD", 1)
        assert (refused.value.code, refused.value.status) == (-2013, 400)


def test_the_sdk_rest_client(exchange: Exchange) -> None:
    asyncio.run(_sdk_round_trip(exchange.url))
