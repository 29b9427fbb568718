"""Stops, take-profits, GTD orders and icebergs over ``streamex api``, as Binance clients send them.

Requests are plain ``requests`` + ``hmac`` written from Binance's docs
(``api_helpers.Binance``): ``STOP_LOSS_LIMIT``/``TAKE_PROFIT``/... with
``stopPrice``, ``icebergQty`` on a resting limit order, and ``timeInForce=GTD``
with ``goodTillDate`` (ms) as Binance's futures API takes it. What is checked
is what a client relies on: an untriggered stop is NEW but not working
(``isWorking`` false, ``workingTime`` -1), holds its funds and is not in the
book; a trade through its stop price triggers it and it then works from that
trade's time; the book shows only an iceberg's slice; a GTD order expires at
its ``goodTillDate`` by the engine's clock, with no traffic at all; open and
closed orders read the same from the live view and from history; the SDK
(``streamex.rest_client``) places and reads them too. The exchange is real
processes (``api_helpers.Exchange``): engines, risk stage, history, REST.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import ANN, BEN, CAT, DAN, EVE, FAY, GUS, HAL, Binance, Exchange
from timing import wait_until

from streamex.rest_client import RestClient


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    running = Exchange(tmp_path_factory.mktemp("api-order-types")).start()
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
    """The balance becomes ``expected`` (free, locked): the risk stage commits holds beside
    the market's reports, so a read right after may trail them."""
    wait_until(lambda: _balance(client, asset) == expected, what=f"{asset} {expected}")


def _pick(order: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: order[k] for k in keys}


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_a_stop_an_iceberg_and_a_gtd_order_placed_queried_and_canceled(
        exchange: Exchange) -> None:
    ann = Binance(exchange.url, ANN)
    until = _now_ms() + 3_600_000
    stop = ann.order(symbol="BTCUSD", side="SELL", type="STOP_LOSS_LIMIT", timeInForce="GTC",
                     quantity="0.5", price="29000.00", stopPrice="29500.00",
                     newClientOrderId="ann-stop", newOrderRespType="RESULT")
    assert _pick(stop, "type", "status", "timeInForce", "price", "origQty", "stopPrice",
                 "workingTime", "clientOrderId") == {
        "type": "STOP_LOSS_LIMIT", "status": "NEW", "timeInForce": "GTC", "price": "29000.00",
        "origQty": "0.5000", "stopPrice": "29500.00", "workingTime": -1,
        "clientOrderId": "ann-stop"}
    # A stop's answer is ACK by default, as on Binance.
    take_profit = ann.order(symbol="BTCUSD", side="SELL", type="TAKE_PROFIT_LIMIT",
                            timeInForce="GTC", quantity="0.1", price="40000.00",
                            stopPrice="41000.00")
    assert set(take_profit) == {"symbol", "orderId", "orderListId", "clientOrderId",
                                "transactTime"}
    iceberg = ann.order(symbol="BTCUSD", side="BUY", type="LIMIT", timeInForce="GTC",
                        quantity="2", price="20000.00", icebergQty="0.5")
    assert _pick(iceberg, "status", "icebergQty", "origQty") == \
        {"status": "NEW", "icebergQty": "0.5000", "origQty": "2.0000"}
    gtd = ann.order(symbol="BTCUSD", side="BUY", type="LIMIT", timeInForce="GTD",
                    quantity="1", price="19000.00", goodTillDate=until)
    assert _pick(gtd, "status", "timeInForce", "goodTillDate") == \
        {"status": "NEW", "timeInForce": "GTD", "goodTillDate": until}
    # The stops hold their base at once; the book shows the iceberg's slice, no stop.
    _settled(ann, "BTC", ("99.4000", "0.6000"))
    wait_until(lambda: ann.public("/api/v3/depth", symbol="BTCUSD") | {"lastUpdateId": 0} == {
        "lastUpdateId": 0, "bids": [["20000.00", "0.5000"], ["19000.00", "1.0000"]],
        "asks": []}, what="the iceberg's slice and the GTD bid in the book")

    opened = {o["orderId"]: o for o in ann.signed("GET", "/api/v3/openOrders",
                                                  symbol="BTCUSD")}
    assert set(opened) == {stop["orderId"], take_profit["orderId"], iceberg["orderId"],
                           gtd["orderId"]}
    live_stop = opened[stop["orderId"]]
    assert _pick(live_stop, "type", "status", "stopPrice", "icebergQty", "isWorking",
                 "workingTime", "goodTillDate") == {
        "type": "STOP_LOSS_LIMIT", "status": "NEW", "stopPrice": "29500.00",
        "icebergQty": "0.0000", "isWorking": False, "workingTime": -1, "goodTillDate": 0}
    assert live_stop["time"] <= stop["transactTime"]  # received, then in the market
    assert _pick(opened[take_profit["orderId"]], "type", "stopPrice", "isWorking") == \
        {"type": "TAKE_PROFIT_LIMIT", "stopPrice": "41000.00", "isWorking": False}
    live_iceberg = opened[iceberg["orderId"]]
    assert _pick(live_iceberg, "icebergQty", "stopPrice", "isWorking", "workingTime") == \
        {"icebergQty": "0.5000", "stopPrice": "0.00", "isWorking": True,
         "workingTime": live_iceberg["time"]}
    assert _pick(opened[gtd["orderId"]], "timeInForce", "goodTillDate") == \
        {"timeInForce": "GTD", "goodTillDate": until}
    assert ann.signed("GET", "/api/v3/order", symbol="BTCUSD",
                      origClientOrderId="ann-stop") == live_stop

    # Untriggered is NEW to Binance's cancel restrictions too.
    refused = ann.call("DELETE", "/api/v3/order", {"symbol": "BTCUSD", "orderId": stop[
        "orderId"], "cancelRestrictions": "ONLY_PARTIALLY_FILLED"})
    assert refused.json() == {"code": -2011, "msg": "Order was not canceled due to cancel "
                                                    "restrictions."}
    canceled = ann.signed("DELETE", "/api/v3/order", symbol="BTCUSD", orderId=stop["orderId"],
                          cancelRestrictions="ONLY_NEW")
    assert _pick(canceled, "status", "type", "stopPrice", "origClientOrderId") == \
        {"status": "CANCELED", "type": "STOP_LOSS_LIMIT", "stopPrice": "29500.00",
         "origClientOrderId": "ann-stop"}
    closed = ann.signed("GET", "/api/v3/order", symbol="BTCUSD", orderId=stop["orderId"])
    assert _pick(closed, "status", "type", "stopPrice", "isWorking", "workingTime",
                 "price", "origQty") == {
        "status": "CANCELED", "type": "STOP_LOSS_LIMIT", "stopPrice": "29500.00",
        "isWorking": False, "workingTime": -1, "price": "29000.00", "origQty": "0.5000"}
    _settled(ann, "BTC", ("99.9000", "0.1000"))
    every = ann.signed("GET", "/api/v3/allOrders", symbol="BTCUSD")
    assert [(o["orderId"], o["type"], o["status"], o["stopPrice"], o["icebergQty"],
             o["timeInForce"], o["goodTillDate"]) for o in every] == [
        (stop["orderId"], "STOP_LOSS_LIMIT", "CANCELED", "29500.00", "0.0000", "GTC", 0),
        (take_profit["orderId"], "TAKE_PROFIT_LIMIT", "NEW", "41000.00", "0.0000", "GTC", 0),
        (iceberg["orderId"], "LIMIT", "NEW", "0.00", "0.5000", "GTC", 0),
        (gtd["orderId"], "LIMIT", "NEW", "0.00", "0.0000", "GTD", until)]
    # Canceling every open order of the market takes the untriggered take-profit too.
    assert sorted(o["orderId"] for o in ann.signed("DELETE", "/api/v3/openOrders",
                                                   symbol="BTCUSD")) == \
        sorted([take_profit["orderId"], iceberg["orderId"], gtd["orderId"]])
    _settled(ann, "BTC", ("100.0000", "0.0000"))
    _settled(ann, "USD", ("1000000.000000", "0.000000"))


def test_a_stop_triggered_by_a_trade_works_from_the_trades_time(exchange: Exchange) -> None:
    cat, dan, eve = (Binance(exchange.url, a) for a in (CAT, DAN, EVE))
    stop = cat.order(symbol="ETHUSD", side="BUY", type="STOP_LOSS_LIMIT", timeInForce="GTC",
                     quantity="2", price="2100.00", stopPrice="2050.00",
                     newOrderRespType="FULL")
    assert _pick(stop, "status", "workingTime", "fills") == \
        {"status": "NEW", "workingTime": -1, "fills": []}
    never = cat.order(symbol="ETHUSD", side="SELL", type="TAKE_PROFIT", quantity="1",
                      stopPrice="3000.00")
    dan.order(symbol="ETHUSD", side="SELL", type="LIMIT", timeInForce="GTC", quantity="2",
              price="2050.00")
    trade = eve.order(symbol="ETHUSD", side="BUY", type="LIMIT", timeInForce="GTC",
                      quantity="1", price="2050.00")
    assert (trade["status"], trade["fills"][0]["price"]) == ("FILLED", "2050.00")
    # That trade printed at the stop price: cat's stop became a limit buy at 2100, took
    # dan's other 1 at 2050 and rests with the rest, working since the trade.
    working = wait_until(lambda: next(
        (o for o in cat.signed("GET", "/api/v3/openOrders", symbol="ETHUSD")
         if o["orderId"] == stop["orderId"] and o["status"] == "PARTIALLY_FILLED"), None),
        what="the stop triggered")
    assert _pick(working, "type", "stopPrice", "executedQty", "isWorking", "workingTime",
                 "cummulativeQuoteQty") == {
        "type": "STOP_LOSS_LIMIT", "stopPrice": "2050.00", "executedQty": "1.0000",
        "isWorking": True, "workingTime": trade["transactTime"],
        "cummulativeQuoteQty": "2050.000000"}
    assert cat.signed("GET", "/api/v3/order", symbol="ETHUSD", orderId=stop["orderId"]) == \
        working
    untouched = cat.signed("GET", "/api/v3/order", symbol="ETHUSD", orderId=never["orderId"])
    assert _pick(untouched, "type", "status", "isWorking", "workingTime") == \
        {"type": "TAKE_PROFIT", "status": "NEW", "isWorking": False, "workingTime": -1}
    fills = cat.signed("GET", "/api/v3/myTrades", symbol="ETHUSD", orderId=stop["orderId"])
    assert [(f["price"], f["qty"], f["isBuyer"], f["isMaker"]) for f in fills] == \
        [("2050.00", "1.0000", True, False)]
    # Canceled after its trigger, it still says when it started working (from history).
    cat.signed("DELETE", "/api/v3/order", symbol="ETHUSD", orderId=stop["orderId"])
    closed = cat.signed("GET", "/api/v3/order", symbol="ETHUSD", orderId=stop["orderId"])
    assert _pick(closed, "status", "executedQty", "isWorking", "workingTime") == \
        {"status": "CANCELED", "executedQty": "1.0000", "isWorking": True,
         "workingTime": trade["transactTime"]}
    cat.signed("DELETE", "/api/v3/order", symbol="ETHUSD", orderId=never["orderId"])


def test_gtd_orders_expire_at_their_good_till_date_on_a_quiet_market(
        exchange: Exchange) -> None:
    gus = Binance(exchange.url, GUS)
    until = _now_ms() + 1500
    bid = gus.order(symbol="SOLUSD", side="BUY", type="LIMIT", timeInForce="GTD",
                    quantity="1", price="100.00", goodTillDate=until, newOrderRespType="RESULT")
    take_profit = gus.order(symbol="SOLUSD", side="SELL", type="TAKE_PROFIT", quantity="2",
                            stopPrice="500.00", timeInForce="GTD", goodTillDate=until,
                            newOrderRespType="RESULT")
    assert _pick(bid, "status", "timeInForce", "goodTillDate") == \
        {"status": "NEW", "timeInForce": "GTD", "goodTillDate": until}
    assert 0 < bid["workingTime"] <= bid["transactTime"]  # working since it was received
    assert _pick(take_profit, "type", "status", "timeInForce", "goodTillDate",
                 "workingTime") == {"type": "TAKE_PROFIT", "status": "NEW",
                                    "timeInForce": "GTD", "goodTillDate": until,
                                    "workingTime": -1}
    _settled(gus, "SOL", ("9998.0000", "2.0000"))
    # Nothing else happens in the market: the engine's own clock entry expires both.
    for order in (bid, take_profit):
        expired = wait_until(
            lambda o=order: (got := gus.signed("GET", "/api/v3/order", symbol="SOLUSD",
                                               orderId=o["orderId"]))["status"] == "EXPIRED"
            and got, what="the GTD order expired")
        assert expired["updateTime"] >= until
        assert (expired["timeInForce"], expired["goodTillDate"]) == ("GTD", until)
    assert gus.signed("GET", "/api/v3/openOrders", symbol="SOLUSD") == []
    assert [o["status"] for o in gus.signed("GET", "/api/v3/allOrders", symbol="SOLUSD")] == \
        ["EXPIRED", "EXPIRED"]
    _settled(gus, "SOL", ("10000.0000", "0.0000"))
    _settled(gus, "USD", ("1000000.000000", "0.000000"))


def test_a_triggered_stop_keeps_its_working_time_across_a_restart(exchange: Exchange) -> None:
    ben, hal, ann = (Binance(exchange.url, a) for a in (BEN, HAL, ANN))
    stop = ben.order(symbol="ADAUSD", side="BUY", type="STOP_LOSS_LIMIT", timeInForce="GTC",
                     quantity="15", price="0.60", stopPrice="0.50")
    hal.order(symbol="ADAUSD", side="SELL", type="LIMIT", timeInForce="GTC", quantity="20",
              price="0.50")
    trade = ann.order(symbol="ADAUSD", side="BUY", type="LIMIT", timeInForce="IOC",
                      quantity="10", price="0.50")
    assert trade["status"] == "FILLED"
    working = wait_until(lambda: (o := ben.signed("GET", "/api/v3/order", symbol="ADAUSD",
                                                  orderId=stop["orderId"]))["executedQty"]
                         == "10.0000" and o, what="the stop triggered and took hal's 10")
    assert (working["status"], working["workingTime"]) == \
        ("PARTIALLY_FILLED", trade["transactTime"])
    # A new REST process knows the order from the engine's snapshot and streams, its
    # trigger time from the history database.
    url = exchange.restart_api()
    ben = Binance(url, BEN)
    assert ben.signed("GET", "/api/v3/order", symbol="ADAUSD", orderId=stop["orderId"]) == \
        working
    assert ben.signed("GET", "/api/v3/openOrders", symbol="ADAUSD") == [working]
    ben.signed("DELETE", "/api/v3/openOrders", symbol="ADAUSD")


async def _sdk_order_types(url: str) -> None:
    until = _now_ms() + 3_600_000
    async with RestClient(url, FAY.api_key, FAY.secret) as rest:
        stop = await rest.place("DOT-USD", "sell", "stop_limit", "2", "6.00",
                                stop_price="6.50", client_order_id="fay-stop")
        assert (stop.type, stop.status, stop.stop_price, stop.working_time) == \
            ("STOP_LOSS_LIMIT", "NEW", "6.50", -1)
        berg = await rest.place("DOT-USD", "buy", "limit", "4", "5.00", iceberg_qty="1",
                                tif="GTD", good_till_date=until)
        assert (berg.iceberg_qty, berg.time_in_force, berg.good_till_date) == \
            ("1.0000", "GTD", until)
        budget = await rest.place("DOT-USD", "buy", "stop_market", quote_qty="20",
                                  stop_price="9.00")
        assert (budget.type, budget.stop_price, budget.status) == ("STOP_LOSS", "9.00", "NEW")
        got = await rest.order("DOT-USD", client_order_id="fay-stop")
        assert (got.order_id, got.is_working, got.working_time, got.stop_price,
                got.iceberg_qty) == (stop.order_id, False, -1, "6.50", "0.0000")
        listed = {o.order_id: o for o in await rest.open_orders("DOT-USD")}
        assert set(listed) == {stop.order_id, berg.order_id, budget.order_id}
        assert (listed[berg.order_id].is_working, listed[berg.order_id].good_till_date) == \
            (True, until)
        canceled = await rest.cancel_all("DOT-USD")
        assert sorted((o.order_id, o.status) for o in canceled) == sorted(
            (o, "CANCELED") for o in listed)


def test_the_sdk_places_and_reads_the_new_order_types(exchange: Exchange) -> None:
    asyncio.run(_sdk_order_types(exchange.url))
