"""The REST service's sans-I/O parts: parameters, signatures, outcomes, shapes, errors."""

from __future__ import annotations

import asyncio

import pytest

from api.auth import authenticate
from api.errors import BinanceError, from_streamex
from api.outcomes import Outcomes
from api.params import Params, signature_payload
from api.shapes import (
    OrderState,
    Symbols,
    binance_symbol,
    exchange_info_json,
    order_json,
    result_json,
    state_of_report,
    status_of,
    working,
)
from contract.errors import (
    EXPIRED,
    INVALID_EXPIRE_TIME,
    INVALID_LOT,
    INVALID_QTY,
    INVALID_STOP_PRICE,
    RATE_LIMITED,
    StreamexError,
)
from contract.events import CancelRejected, Report
from contract.ids import order_id_of_number, order_number
from contract.market import DEFAULT_MARKETS, Market
from contract.settings import Account, LimitsConfig

# The example of Binance's docs (rest-api.md, "SIGNED Endpoint Examples for POST
# /api/v3/order"): the key, the secret, the payload and its signature.
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
               "&recvWindow=5000&timestamp=1499827319559")
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOC_ACCOUNTS = {DOC_KEY: Account("doc", DOC_KEY, DOC_SECRET)}


def _code(exc: pytest.ExceptionInfo[BinanceError]) -> int:
    return exc.value.code


def test_params_take_the_query_first_and_refuse_duplicates_and_unread() -> None:
    params = Params.parse("symbol=BTCUSD&limit=5", "limit=7&side=BUY")
    assert (params.required("symbol"), params.long("limit"), params.text("side")) == \
        ("BTCUSD", 5, "BUY")
    params.finish()
    with pytest.raises(BinanceError) as dup:
        Params.parse("a=1&a=2")
    assert _code(dup) == -1101
    extra = Params.parse("symbol=X&colour=red")
    extra.required("symbol")
    with pytest.raises(BinanceError) as unread:
        extra.finish()
    assert _code(unread) == -1104 and "'colour'" in unread.value.msg
    with pytest.raises(BinanceError) as empty:
        Params.parse("symbol=").required("symbol")
    assert _code(empty) == -1102
    with pytest.raises(BinanceError) as illegal:
        Params.parse("quantity=1e5").decimal("quantity")
    assert _code(illegal) == -1100
    with pytest.raises(BinanceError) as utf8:
        Params.parse("symbol=%ff")
    assert _code(utf8) == -1100
    assert Params.parse("symbol=%E2%82%AC+x").required("symbol") == "\u20ac x"


def test_the_signature_of_binances_documented_example_is_accepted() -> None:
    now = 1499827319559 + 100
    query = DOC_PAYLOAD + "&signature=" + DOC_SIGNATURE
    payload, signature = signature_payload(query, "")
    assert (payload, signature) == (DOC_PAYLOAD, DOC_SIGNATURE)
    params = Params.parse(query)
    assert authenticate(DOC_ACCOUNTS, DOC_KEY, params, payload, signature, now, 60_000).id \
        == "doc"
    # Mixed: query string then body, concatenated without separator (totalParams).
    head, tail = DOC_PAYLOAD[:50], DOC_PAYLOAD[50:]
    assert signature_payload(head, tail + "&signature=x") == (DOC_PAYLOAD, "x")
    upper = signature_payload(query.replace(DOC_SIGNATURE, DOC_SIGNATURE.upper()), "")
    assert authenticate(DOC_ACCOUNTS, DOC_KEY, Params.parse(query), *upper, now, 60_000)


@pytest.mark.parametrize(("key", "signature", "now", "code"), [
    (None, DOC_SIGNATURE, 1499827319600, -2014),
    ("unknown-key", DOC_SIGNATURE, 1499827319600, -2015),
    (DOC_KEY, "0" * 64, 1499827319600, -1022),
    (DOC_KEY, None, 1499827319600, -1102),
    (DOC_KEY, DOC_SIGNATURE, 1499827319559 + 5001, -1021),  # outside recvWindow 5000
    (DOC_KEY, DOC_SIGNATURE, 1499827319559 - 1000, -1021),  # 1000 ms ahead of the server
])
def test_refused_signatures(key: str | None, signature: str | None, now: int,
                            code: int) -> None:
    params = Params.parse(DOC_PAYLOAD)
    with pytest.raises(BinanceError) as refused:
        authenticate(DOC_ACCOUNTS, key, params, DOC_PAYLOAD, signature, now, 60_000)
    assert _code(refused) == code
    assert refused.value.status == (401 if code in (-2014, -2015) else 400)


def _report(order_id: str, exec_type: str, status: str, account: str = "ann",
            seq: int = 1) -> Report:
    return Report(seq, 1, account, order_id, None, "buy", "limit", "GTC", 100, 5,
                  exec_type, status, 0, 0, 0, 5, 0, None, None, None)  # type: ignore[arg-type]


async def _first_reports_read_before_and_after_the_xadd_reply() -> None:
    outcomes = Outcomes()
    outcomes.placing("BTC-USD", "ann")
    outcomes.observe("BTC-USD", b"5-0", "BTC-USD", [_report("1-0", "new", "new")])
    early = outcomes.placed("BTC-USD", "ann", "1-0")
    assert early.done() and [r.order_id for r in early.result()] == ["1-0"]
    outcomes.placing("BTC-USD", "ann")
    late = outcomes.placed("BTC-USD", "ann", "2-0")
    assert not late.done() and outcomes.pending_place("BTC-USD", "2-0") is late
    assert outcomes.pending_of("ann") == [late] and outcomes.pending_of("ann", "ETH-USD") == []
    outcomes.observe("BTC-USD", b"6-0", "BTC-USD",
                     [_report("2-0", "new", "new"), _report("2-0", "trade", "filled")])
    assert [r.exec_type for r in late.result()] == ["new", "trade"]
    await asyncio.sleep(0)  # the done callbacks
    assert outcomes.pending_of("ann") == []
    assert outcomes.position_of("BTC-USD", "ann") == b"6-0"
    assert outcomes.position_of("BTC-USD", "ben") is None

    canceled = outcomes.canceling("BTC-USD", "ann", "3-0")
    refused = outcomes.canceling("BTC-USD", "ann", "4-0")
    outcomes.observe("BTC-USD", b"7-0", "BTC-USD", [
        _report("3-0", "trade", "partially_filled"), _report("3-0", "canceled", "canceled"),
        CancelRejected(9, 1, "ann", "4-0", None, "8-0", "UNKNOWN_ORDER")])
    assert canceled.result().exec_type == "canceled"  # type: ignore[union-attr]
    assert isinstance(refused.result(), CancelRejected)


def test_outcomes_resolve_places_and_cancels_in_any_order() -> None:
    asyncio.run(_first_reports_read_before_and_after_the_xadd_reply())


def test_order_shapes_and_ids() -> None:
    btc = DEFAULT_MARKETS[0]
    assert binance_symbol(btc.symbol) == "BTCUSD"
    assert Symbols(DEFAULT_MARKETS).market("ETHUSD").symbol == "ETH-USD"
    with pytest.raises(BinanceError):
        Symbols(DEFAULT_MARKETS).market("ETH-USD")
    with pytest.raises(ValueError, match="are both ABCUSD"):
        Symbols([Market("AB-CUSD", "AB", "CUSD", "0.01", "1", "1", "10", "0.01", "10"),
                 Market("ABC-USD", "ABC", "USD", "0.01", "1", "1", "10", "0.01", "10")])
    order_id = "1796194038734-3-2"
    assert order_id_of_number(order_number(order_id)) == order_id
    state = OrderState(order_id, "c1", "sell", "limit", "IOC", 3_000_000, 5000, 2000,
                       2000 * 3_000_000, "expired", "STP", 1796194038734, 1796194038800)
    body = order_json(btc, state)
    assert {k: body[k] for k in ("symbol", "orderId", "price", "origQty", "executedQty",
                                 "cummulativeQuoteQty", "status", "timeInForce", "side")} == {
        "symbol": "BTCUSD", "orderId": order_number(order_id), "price": "30000.00",
        "origQty": "0.5000", "executedQty": "0.2000", "cummulativeQuoteQty": "6000.000000",
        "status": "EXPIRED_IN_MATCH", "timeInForce": "IOC", "side": "SELL"}
    assert status_of(state._replace(reason=None)) == "EXPIRED"


def test_streamex_errors_become_binance_codes() -> None:
    lot = from_streamex(StreamexError(INVALID_LOT, "params.qty: must be a multiple of 0.0001"))
    assert (lot.code, lot.msg) == (-1013, "Filter failure: LOT_SIZE (quantity: must be a "
                                          "multiple of 0.0001)")
    limited = from_streamex(StreamexError(RATE_LIMITED, "too many", retry_after_ms=1500))
    assert (limited.code, limited.status, limited.retry_after_s) == (-1015, 429, 2)


def _stop_report(exec_type: str, status: str, ts: int, cum: int = 0) -> Report:
    return Report(7, ts, "ann", "1796194038734-3", "s1", "sell", "stop_limit", "GTC",
                  2_990_000, 5000, exec_type, status, 0, 0, cum, 5000 - cum,  # type: ignore[arg-type]
                  cum * 2_990_000, None, None, None, stop_price=3_000_000)


def test_a_stop_is_new_but_not_working_until_its_trigger() -> None:
    btc = DEFAULT_MARKETS[0]
    untriggered = order_json(btc, state_of_report(_stop_report("new", "untriggered", 10)))
    assert {k: untriggered[k] for k in ("type", "status", "timeInForce", "price", "stopPrice",
                                        "icebergQty", "isWorking", "workingTime",
                                        "goodTillDate")} == {
        "type": "STOP_LOSS_LIMIT", "status": "NEW", "timeInForce": "GTC", "price": "29900.00",
        "stopPrice": "30000.00", "icebergQty": "0.0000", "isWorking": False,
        "workingTime": -1, "goodTillDate": 0}
    assert untriggered["time"] == 1796194038734  # received then
    # the trigger report states its own time; a later one needs it from the caller
    triggered = order_json(btc, state_of_report(_stop_report("triggered", "new", 20)))
    assert (triggered["status"], triggered["isWorking"], triggered["workingTime"]) == \
        ("NEW", True, 20)
    filled = state_of_report(_stop_report("trade", "partially_filled", 30, 2000), trigger_ts=20)
    assert (order_json(btc, filled)["workingTime"], working(filled)) == (20, (True, 20))
    # canceled before it triggered: it never worked
    assert working(state_of_report(_stop_report("canceled", "canceled", 40))) == (False, -1)
    # placement and cancel answers carry stopPrice only where the order has one
    assert result_json(btc, state_of_report(_stop_report("new", "untriggered", 10)), 10
                       )["stopPrice"] == "30000.00"
    assert "stopPrice" not in result_json(btc, OrderState(
        "1796194038734-4", None, "buy", "limit", "GTC", 1, 1, 0, 0, "new", None, 1, 1), 1)


def test_gtd_icebergs_and_take_profits_in_binances_words() -> None:
    btc = DEFAULT_MARKETS[0]
    gtd_iceberg = OrderState("1796194038734-3", "g", "buy", "limit", "GTD", 2_000_000, 10_000,
                             0, 0, "new", None, 1796194038734, 1796194038734,
                             expire_time=1796194099000, display_qty=2500)
    body = order_json(btc, gtd_iceberg)
    assert (body["type"], body["timeInForce"], body["goodTillDate"], body["icebergQty"],
            body["isWorking"], body["workingTime"]) == (
        "LIMIT", "GTD", 1796194099000, "0.2500", True, 1796194038734)
    assert {k: v for k, v in result_json(btc, gtd_iceberg, 5).items()
            if k in ("icebergQty", "goodTillDate", "stopPrice")} == {
        "icebergQty": "0.2500", "goodTillDate": 1796194099000}
    take_profit = gtd_iceberg._replace(type="take_profit_market", tif="GTD", price=0,
                                       stop_price=3_100_000, status="expired",
                                       reason=EXPIRED, display_qty=0)
    body = order_json(btc, take_profit)
    assert (body["type"], body["timeInForce"], body["status"], body["stopPrice"],
            body["isWorking"], body["workingTime"]) == (
        "TAKE_PROFIT", "GTD", "EXPIRED", "31000.00", False, -1)
    assert order_json(btc, take_profit._replace(type="stop_market", tif="IOC"))[
        "timeInForce"] == "GTC"  # as Binance states a market order's
    info = exchange_info_json(DEFAULT_MARKETS[:1], 0, LimitsConfig(), True)["symbols"][0]
    assert info["orderTypes"] == ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS",
                                  "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
    assert info["icebergAllowed"] is True


def test_order_type_errors_become_binance_codes() -> None:
    stop = from_streamex(StreamexError(INVALID_STOP_PRICE,
                                       "params.stop_price: must be a multiple of 0.01"))
    assert (stop.code, stop.msg) == (-1013, "Filter failure: PRICE_FILTER (stopPrice: must "
                                            "be a multiple of 0.01)")
    expire = from_streamex(StreamexError(INVALID_EXPIRE_TIME, "params.expire_time: 5 is not "
                                         "later than the gateway's clock (9 ms)"))
    assert (expire.code, expire.msg) == (-1130, "Data sent for parameter 'goodTillDate' is "
                                                "not valid. (goodTillDate: 5 is not later than "
                                                "the gateway's clock (9 ms))")
    iceberg = from_streamex(StreamexError(INVALID_QTY, "params.display_qty: must not exceed "
                                          "qty"))
    assert (iceberg.code, iceberg.msg) == (-1013, "Filter failure: LOT_SIZE (icebergQty: must "
                                                  "not exceed qty)")


def test_outcomes_keep_an_open_stops_trigger_time() -> None:
    outcomes = Outcomes()
    order_id = "1796194038734-3"
    outcomes.observe("BTC-USD", b"1-0", "BTC-USD", [_stop_report("new", "untriggered", 10)])
    assert outcomes.trigger_time("BTC-USD", order_id) is None
    outcomes.observe("BTC-USD", b"2-0", "BTC-USD", [_stop_report("triggered", "new", 20),
                                                    _stop_report("trade", "partially_filled",
                                                                 20, 1000)])
    outcomes.observe("BTC-USD", b"3-0", "BTC-USD",
                     [_stop_report("trade", "partially_filled", 30, 2000)])
    assert outcomes.trigger_time("BTC-USD", order_id) == 20
    assert outcomes.trigger_time("ETH-USD", order_id) is None
    outcomes.observe("BTC-USD", b"4-0", "BTC-USD", [_stop_report("canceled", "canceled", 40)])
    assert outcomes.trigger_time("BTC-USD", order_id) is None  # ended: forgotten
