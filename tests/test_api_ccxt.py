"""ccxt's ``binance`` class against ``streamex api``: every method PROTOCOL.md section D lists.

The exchange is a running ``streamex up`` (in a temporary data directory, with
this module's configuration), with ``streamex history`` and ``streamex api``
started next to it on its Redis (``api_helpers.Exchange(up=True)``). ccxt
4.5.90's ``binance`` has every ``urls['api']`` entry pointed at the service
(``api_helpers.binance_client``) and is driven through ``load_markets``,
``fetch_order_book``, ``fetch_trades``, ``fetch_ohlcv``, ``fetch_ticker``,
``fetch_balance``, ``create_order`` (limit and market), ``cancel_order``,
``fetch_order``, ``fetch_open_orders``, ``fetch_closed_orders`` and
``fetch_my_trades``; the tests assert the values (prices, quantities, statuses,
balances after fees, fees), not only that calls return. Stop-limit and
take-profit orders go through ``create_order`` as ccxt users send them (the
type ``STOP_LOSS_LIMIT`` with ``stopPrice``, or ``limit`` with ``stopPrice`` /
``takeProfitPrice``), icebergs with ``icebergAmount``. Markets have maker 10
bps and taker 20 bps fees, charged in USD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ccxt
import pytest
from api_helpers import (
    ANN,
    BEN,
    CAT,
    DAN,
    EVE,
    FAY,
    GUS,
    HAL,
    MARKETS,
    POOR,
    Exchange,
    binance_client,
    make_config,
)
from timing import wait_until

from contract.settings import Account


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    running = Exchange(tmp_path_factory.mktemp("api-ccxt"), make_config(MARKETS[:3]),
                       up=True).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(exchange: Exchange) -> Iterator[Callable[[Account], ccxt.binance]]:
    """``client(account)``: a ccxt binance of the exchange; sessions closed after the test."""
    made: list[ccxt.binance] = []

    def make(account: Account) -> ccxt.binance:
        made.append(binance_client(exchange.url, account))
        return made[-1]

    yield make
    for c in made:
        c.session.close()


def _balance(client: ccxt.binance, asset: str) -> tuple[float, float]:
    entry = client.fetch_balance()[asset]
    return entry["free"], entry["used"]


def _settled(client: ccxt.binance, asset: str, expected: tuple[float, float]) -> None:
    """The balance becomes ``expected`` (free, used): the risk stage settles a fill shortly
    after the market reported it, so a balance read right after an order may trail it."""
    wait_until(lambda: _balance(client, asset) == expected, what=f"{asset} {expected}")


def test_load_markets_gives_binance_symbols_precision_and_limits(
        client: Callable[[Account], ccxt.binance]) -> None:
    ann = client(ANN)
    markets = ann.load_markets()
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(markets)
    btc = markets["BTC/USD"]
    assert (btc["id"], btc["base"], btc["quote"], btc["spot"], btc["active"]) == \
        ("BTCUSD", "BTC", "USD", True, True)
    assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 0.0001)
    assert btc["limits"]["amount"] == {"min": 0.0001, "max": 1000.0}
    assert btc["limits"]["price"] == {"min": 0.01, "max": 1000000.0}
    assert btc["limits"]["cost"]["min"] == 0.000001  # min price x min qty, in USD
    assert ann.fetch_time() > 0


def test_market_data_book_trades_ohlcv_ticker(
        client: Callable[[Account], ccxt.binance]) -> None:
    ann, ben, cat, dan = (client(a) for a in (ANN, BEN, CAT, DAN))
    for c in (ann, ben, cat, dan):
        c.load_markets()
    ann.create_order("SOL/USD", "limit", "sell", 2, 101)
    ann.create_order("SOL/USD", "limit", "sell", 1, 102.5)
    ben.create_order("SOL/USD", "limit", "buy", 3, 99)
    ben.create_order("SOL/USD", "limit", "buy", 1, 98.5)
    book = ann.fetch_order_book("SOL/USD")
    assert book["asks"] == [[101.0, 2.0], [102.5, 1.0]]
    assert book["bids"] == [[99.0, 3.0], [98.5, 1.0]]
    assert book["nonce"] > 0  # lastUpdateId: the market's event seq
    top = ann.fetch_order_book("SOL/USD", limit=1)
    assert (top["asks"], top["bids"]) == ([[101.0, 2.0]], [[99.0, 3.0]])

    # A market buy by cost (ccxt sends quoteOrderQty cut to the tick: 202.41): 2 at 101 =
    # 202 USD plus the 20 bps taker fee, 0.404; what is left buys no other lot.
    bought = cat.create_market_buy_order_with_cost("SOL/USD", 202.41)
    assert (bought["status"], bought["filled"], bought["cost"]) == ("closed", 2.0, 202.0)
    assert [(t["price"], t["amount"], t["fee"]["cost"]) for t in bought["trades"]] == \
        [(101.0, 2.0, 0.404)]
    sold = dan.create_order("SOL/USD", "market", "sell", 1.5)
    assert (sold["status"], sold["filled"], sold["average"]) == ("closed", 1.5, 99.0)

    trades = wait_until(lambda: (t := ann.fetch_trades("SOL/USD")) and len(t) == 2 and t,
                        what="both trades in history")
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == \
        [(101.0, 2.0, "buy"), (99.0, 1.5, "sell")]
    assert int(trades[1]["id"]) == int(trades[0]["id"]) + 1

    candles: dict[int, list[float]] = {}
    for t in trades:  # the expected one-minute candles, from the trades' times
        minute = t["timestamp"] - t["timestamp"] % 60_000
        c = candles.setdefault(minute, [minute, t["price"], t["price"], t["price"], 0, 0])
        c[2], c[3] = max(c[2], t["price"]), min(c[3], t["price"])
        c[4], c[5] = t["price"], c[5] + t["amount"]
    assert ann.fetch_ohlcv("SOL/USD", "1m") == list(candles.values())
    assert ann.fetch_ohlcv("SOL/USD", "1m", since=trades[-1]["timestamp"] // 60_000 * 60_000
                           ) == [list(candles.values())[-1]]

    ticker = ann.fetch_ticker("SOL/USD")
    assert (ticker["last"], ticker["high"], ticker["low"], ticker["open"]) == \
        (99.0, 101.0, 99.0, 101.0)
    assert (ticker["bid"], ticker["bidVolume"], ticker["ask"], ticker["askVolume"]) == \
        (99.0, 1.5, 102.5, 1.0)
    assert (ticker["baseVolume"], ticker["quoteVolume"]) == (3.5, 350.5)
    assert ticker["info"]["count"] == 2


def test_trading_flow_with_balances_and_fees(
        client: Callable[[Account], ccxt.binance]) -> None:
    eve, fay = client(EVE), client(FAY)
    eve.load_markets()
    fay.load_markets()
    _settled(eve, "USD", (1_000_000.0, 0.0))
    _settled(eve, "BTC", (100.0, 0.0))

    sell = eve.create_order("BTC/USD", "limit", "sell", 0.5, 30000)
    assert (sell["status"], sell["filled"], sell["price"], sell["amount"]) == \
        ("open", 0.0, 30000.0, 0.5)
    buy = fay.create_order("BTC/USD", "limit", "buy", 0.2, 30000)
    assert (buy["status"], buy["filled"], buy["average"], buy["cost"]) == \
        ("closed", 0.2, 30000.0, 6000.0)
    # fay took: 20 bps of 6,000 USD.
    assert [(t["price"], t["amount"], t["fee"]) for t in buy["trades"]] == \
        [(30000.0, 0.2, {"currency": "USD", "cost": 12.0})]

    order = eve.fetch_order(sell["id"], "BTC/USD")
    assert (order["status"], order["filled"], order["remaining"], order["clientOrderId"]) == \
        ("open", 0.2, 0.3, sell["clientOrderId"])
    assert [o["id"] for o in eve.fetch_open_orders("BTC/USD")] == [sell["id"]]
    # eve made: +6,000 USD less 10 bps; 0.3 BTC still held by the open order.
    _settled(eve, "USD", (1_005_994.0, 0.0))
    _settled(eve, "BTC", (99.5, 0.3))
    _settled(fay, "USD", (993_988.0, 0.0))
    _settled(fay, "BTC", (100.2, 0.0))

    canceled = eve.cancel_order(sell["id"], "BTC/USD")
    assert (canceled["status"], canceled["filled"], canceled["id"]) == \
        ("canceled", 0.2, sell["id"])
    assert eve.fetch_open_orders("BTC/USD") == []
    _settled(eve, "BTC", (99.8, 0.0))
    closed = eve.fetch_order(sell["id"], "BTC/USD")  # from history, read-your-writes
    assert (closed["status"], closed["filled"], closed["remaining"]) == ("canceled", 0.2, 0.3)
    with pytest.raises(ccxt.OrderNotFound):
        eve.cancel_order(sell["id"], "BTC/USD")

    assert [(o["id"], o["status"], o["filled"]) for o in
            fay.fetch_closed_orders("BTC/USD")] == [(buy["id"], "closed", 0.2)]
    assert eve.fetch_closed_orders("BTC/USD") == []  # canceled is not closed in ccxt
    mine = eve.fetch_my_trades("BTC/USD")
    assert [(t["order"], t["side"], t["price"], t["amount"], t["takerOrMaker"], t["fee"])
            for t in mine] == [(sell["id"], "sell", 30000.0, 0.2, "maker",
                                {"currency": "USD", "cost": 6.0})]
    theirs = fay.fetch_my_trades("BTC/USD")
    assert [(t["order"], t["side"], t["takerOrMaker"], t["fee"]["cost"]) for t in theirs] == \
        [(buy["id"], "buy", "taker", 12.0)]
    assert theirs[0]["id"] == mine[0]["id"]

    # A market sell by quantity into a bid: 0.1 at 29,000, 5.8 USD of taker fee.
    bid = eve.create_order("BTC/USD", "limit", "buy", 0.1, 29000)
    market_sell = fay.create_order("BTC/USD", "market", "sell", 0.1)
    assert (market_sell["status"], market_sell["filled"], market_sell["average"]) == \
        ("closed", 0.1, 29000.0)
    assert [(t["price"], t["amount"], t["fee"]["cost"]) for t in market_sell["trades"]] == \
        [(29000.0, 0.1, 5.8)]
    assert eve.fetch_order(bid["id"], "BTC/USD")["status"] == "closed"
    _settled(fay, "USD", (996_882.2, 0.0))
    _settled(eve, "BTC", (99.9, 0.0))


def test_refusals_arrive_as_ccxt_exceptions(
        client: Callable[[Account], ccxt.binance]) -> None:
    poor = client(POOR)
    poor.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):
        poor.create_order("ETH/USD", "limit", "buy", 1, 2000)
    with pytest.raises(ccxt.InvalidOrder):
        poor.create_order("ETH/USD", "limit", "buy", 0.00001, 2000)
    with pytest.raises(ccxt.OrderNotFound):
        poor.fetch_order("915856639850971136", "ETH/USD")
    _settled(poor, "USD", (100.0, 0.0))
    bad = client(POOR)
    bad.secret = "not-the-secret"
    with pytest.raises(ccxt.AuthenticationError):
        bad.fetch_balance()



def test_stop_and_take_profit_orders_through_create_order(
        client: Callable[[Account], ccxt.binance]) -> None:
    gus, hal, ben = client(GUS), client(HAL), client(BEN)
    for c in (gus, hal, ben):
        c.load_markets()
    assert gus.markets["ETH/USD"]["info"]["icebergAllowed"] is True
    stop = gus.create_order("ETH/USD", "STOP_LOSS_LIMIT", "sell", 1, 1900,
                            {"stopPrice": 1950})
    assert (stop["status"], stop["type"], stop["triggerPrice"], stop["price"]) == \
        ("open", "limit", 1950.0, 1900.0)
    assert stop["info"]["type"] == "STOP_LOSS_LIMIT"
    # "limit" with a trigger price: ccxt sends STOP_LOSS_LIMIT; with takeProfitPrice,
    # TAKE_PROFIT_LIMIT.
    stop_buy = hal.create_order("ETH/USD", "limit", "buy", 0.5, 2300, {"stopPrice": 2250})
    take_profit = gus.create_order("ETH/USD", "limit", "sell", 0.3, 2600,
                                   {"takeProfitPrice": 2700})
    fetched = gus.fetch_order(take_profit["id"], "ETH/USD")
    assert (fetched["info"]["type"], fetched["status"], fetched["triggerPrice"],
            fetched["takeProfitPrice"], fetched["info"]["isWorking"]) == \
        ("TAKE_PROFIT_LIMIT", "open", 2700.0, 2700.0, False)
    assert hal.fetch_order(stop_buy["id"], "ETH/USD")["info"]["type"] == "STOP_LOSS_LIMIT"
    assert {o["id"] for o in gus.fetch_open_orders("ETH/USD")} == {stop["id"],
                                                                  take_profit["id"]}
    # An iceberg bid; a trade at 1950 prints through gus's stop sell, which then takes
    # what is left of the bid's shown and hidden parts at 1950 and rests with the rest.
    bid = hal.create_order("ETH/USD", "limit", "buy", 1, 1950, {"icebergAmount": 0.25})
    assert bid["info"]["icebergQty"] == "0.2500"
    ben.create_order("ETH/USD", "limit", "sell", 0.5, 1950)
    triggered = wait_until(lambda: (o := gus.fetch_order(stop["id"], "ETH/USD"))["filled"]
                           and o, what="gus's stop triggered and filled in part")
    assert (triggered["status"], triggered["filled"], triggered["remaining"],
            triggered["triggerPrice"], triggered["info"]["isWorking"]) == \
        ("open", 0.5, 0.5, 1950.0, True)
    assert hal.fetch_order(bid["id"], "ETH/USD")["status"] == "closed"
    assert [(t["price"], t["amount"], t["takerOrMaker"]) for t in
            gus.fetch_my_trades("ETH/USD")] == [(1950.0, 0.25, "taker")] * 2  # two slices
    canceled = gus.cancel_order(stop["id"], "ETH/USD")
    assert (canceled["status"], canceled["triggerPrice"]) == ("canceled", 1950.0)
    gus.cancel_order(take_profit["id"], "ETH/USD")
    hal.cancel_order(stop_buy["id"], "ETH/USD")
    closed = gus.fetch_order(stop["id"], "ETH/USD")  # from history
    assert (closed["status"], closed["filled"], closed["triggerPrice"]) == \
        ("canceled", 0.5, 1950.0)
    assert gus.fetch_open_orders("ETH/USD") == [] and hal.fetch_open_orders("ETH/USD") == []
