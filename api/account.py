"""The account's signed queries: an order, open orders, all orders, its trades, its balances.

Open orders and balances come from the live views of the process's router
(what the engine and the risk stage committed, as far as it has read); an
order that is not open, all orders and the account's trades come from the
history database, after waiting (bounded) until it has written everything
the router read for this account (``api.history``, read-your-writes). An
open stop that has triggered works from its trigger time: the time this
process read its ``triggered`` report (``api.outcomes``), else the one the
history database wrote, else its latest report's time. Each
handler reads its parameters, calls ``params.finish()``, and returns the
JSON body. Also here: the ``sapi`` lists ccxt asks for while loading markets
(coins, margin pairs), empty for an account without those products.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from api.context import ApiContext, ApiRequest
from api.errors import (
    MORE_THAN_XX_HOURS,
    NO_SUCH_ORDER,
    ORDER_DOES_NOT_EXIST,
    BinanceError,
)
from api.history import History
from api.market import HOUR_MS, TRADES_DEFAULT, TRADES_MAX
from api.params import Params
from api.shapes import (
    OrderState,
    balances_json,
    binance_symbol,
    my_trade_json,
    order_json,
    rate_text,
    state_of_report,
)
from api.trading import PENDING_WAIT_S, open_order, order_ref
from contract.commands import STOP_TYPES
from contract.events import Report
from contract.ids import order_id_of_number, ts_of
from contract.market import Market
from contract.risk import risk_shard, risk_tag
from store.db import StoreError
from store.rows import OrderRow

DAY_MS = 24 * HOUR_MS


def state_of_row(row: OrderRow) -> OrderState:
    """The order as the history database last wrote it."""
    return OrderState(row.order_id, row.client_order_id, row.side, row.type, row.tif,
                      row.price, row.qty, row.cum_qty, row.cum_notional, row.status,
                      row.reason, row.created_ts, row.updated_ts, None, None, row.quote_qty,
                      row.stop_price, row.expire_time, row.display_qty, row.trigger_ts)


def _triggered_stop(r: Report) -> bool:
    return r.type in STOP_TYPES and r.status != "untriggered"


async def live_states(ctx: ApiContext, account: str, reports: list[tuple[str, Report]]
                      ) -> list[OrderState]:
    """The states of ``account``'s open orders ``(symbol, latest report)``, each triggered
    stop with its trigger time: as this process read it, else as history wrote it (one
    read of the account's open orders per market that needs it), else the report's time.
    Cost: O(orders), plus those reads."""
    outcomes = ctx.outcomes
    known: dict[tuple[str, str], int] = {}
    missing: set[str] = set()
    for symbol, r in reports:
        if _triggered_stop(r) and r.exec_type != "triggered":
            ts = outcomes.trigger_time(symbol, r.order_id)
            if ts is None:
                missing.add(symbol)
            else:
                known[(symbol, r.order_id)] = ts
    history = ctx.history
    if missing and history is not None:
        for symbol in sorted(missing):
            try:
                rows = await history.read(history.store.open_orders, symbol, account)
            except StoreError:
                continue  # the report's time will do
            for row in rows:
                if row.trigger_ts is not None:
                    known.setdefault((symbol, row.order_id), row.trigger_ts)
    states = []
    for symbol, r in reports:
        trigger_ts = None
        if _triggered_stop(r):
            trigger_ts = known.get((symbol, r.order_id), r.ts)
        states.append(state_of_report(r, trigger_ts=trigger_ts))
    return states


async def catch_up(ctx: ApiContext, history: History, symbol: str, account: str) -> None:
    """Wait (bounded) until history has written what the router read for ``account`` in
    ``symbol``'s stream and in its risk shard's."""
    streams = [symbol]
    if ctx.risk:
        streams.append(risk_tag(risk_shard(account, ctx.gateway.risk_shards)))
    wanted = [(s, p) for s in streams
              if (p := ctx.outcomes.position_of(s, account)) is not None]
    if wanted:
        await history.caught_up(wanted)


def _limit(params: Params) -> int:
    limit = params.long("limit", low=1)
    return TRADES_DEFAULT if limit is None else min(limit, TRADES_MAX)


def _day_range(params: Params) -> tuple[int | None, int | None]:
    start, end = params.long("startTime"), params.long("endTime")
    if start is not None and end is not None and end - start > DAY_MS:
        raise BinanceError(MORE_THAN_XX_HOURS, "More than 24 hours between startTime and "
                           "endTime.")
    return start, end


def _market(ctx: ApiContext, params: Params) -> Market:
    return ctx.symbols.market(params.required("symbol"))


async def query_order(ctx: ApiContext, req: ApiRequest) -> Any:
    """An order by ``orderId`` or ``origClientOrderId``, open (live view) or closed."""
    params = req.params
    account = req.signer.id
    market = _market(ctx, params)
    order_id, coid, number = order_ref(params)
    params.finish()
    report = await open_order(ctx, market, account, order_id, coid)
    if report is not None:
        (state,) = await live_states(ctx, account, [(market.symbol, report)])
        return order_json(market, state)
    history = ctx.require_history()
    await catch_up(ctx, history, market.symbol, account)
    store = history.store
    if number is not None:
        row = await history.read(store.order, market.symbol, account, order_number=number)
        if row is not None and coid is not None and row.client_order_id != coid:
            row = None
    else:
        row = await history.read(store.order, market.symbol, account, client_order_id=coid)
    if row is None:
        raise BinanceError(NO_SUCH_ORDER, ORDER_DOES_NOT_EXIST)
    return order_json(market, state_of_row(row))


async def open_orders(ctx: ApiContext, req: ApiRequest) -> Any:
    """The account's open orders (one market, or all), from the live view, after the
    places this process acknowledged for the account have been applied (bounded wait)."""
    params = req.params
    account = req.signer.id
    name = params.text("symbol")
    params.finish()
    symbol = None if name is None else ctx.symbols.market(name).symbol
    pending = ctx.outcomes.pending_of(account, symbol)
    if pending:  # read-your-writes: this process's places acknowledged but not yet applied
        await asyncio.wait(pending, timeout=PENDING_WAIT_S)
    markets = ctx.config.markets_by_symbol
    reports = ctx.gateway.view.open_orders(account, symbol)
    states = await live_states(ctx, account, reports)
    return [order_json(markets[s], state) for (s, _), state in zip(reports, states, strict=True)]


async def all_orders(ctx: ApiContext, req: ApiRequest) -> Any:
    """The account's orders in a market, ascending by ``orderId``: from ``orderId``, within
    ``startTime``..``endTime`` (at most 24 hours), or the latest ``limit``."""
    params = req.params
    account = req.signer.id
    market = _market(ctx, params)
    from_number = params.long("orderId")
    start, end = _day_range(params)
    limit = _limit(params)
    params.finish()
    history = ctx.require_history()
    await catch_up(ctx, history, market.symbol, account)
    rows = await history.read(history.store.orders, market.symbol, account,
                              from_number=from_number, start_ms=start, end_ms=end, limit=limit)
    return [order_json(market, state_of_row(r)) for r in rows]


async def my_trades(ctx: ApiContext, req: ApiRequest) -> Any:
    """The account's fills in a market, ascending by trade id, with their commission (quote,
    as charged): from ``fromId``, within ``startTime``..``endTime`` (at most 24 hours), of
    one ``orderId`` (its first 1,000 fills), or the latest ``limit``."""
    params = req.params
    account = req.signer.id
    market = _market(ctx, params)
    number = params.long("orderId")
    start, end = _day_range(params)
    from_id = params.long("fromId")
    limit = _limit(params)
    params.finish()
    history = ctx.require_history()
    await catch_up(ctx, history, market.symbol, account)
    order_id = None
    if number is not None:
        try:
            order_id = order_id_of_number(number)
        except ValueError:
            return []
        if start is None and from_id is None:
            start = ts_of(order_id)  # its fills are all after it was received
    rows = await history.read(history.store.my_trades, market.symbol, account,
                              start_ms=start, end_ms=end, from_trade_id=from_id,
                              limit=TRADES_MAX if order_id is not None else limit)
    if order_id is not None:
        rows = [r for r in rows if r.order_id == order_id][:limit]
    return [my_trade_json(market, r.trade_id or 0, r.order_id or "", r.last_price, r.last_qty,
                          r.fee, r.ts, r.side or "", r.liquidity == "maker") for r in rows]


def _highest(markets: tuple[Market, ...], maker: bool) -> tuple[int, int]:
    """The highest maker (or taker) fee rate of the markets, as ``(num, den)``."""
    best = (0, 1)
    for m in markets:
        num = m.maker_num if maker else m.taker_num
        if num * best[1] > best[0] * m.fee_den:
            best = (num, m.fee_den)
    return best


def _bps(rate: tuple[int, int]) -> int:
    """A rate in Binance's ``makerCommission`` units (0.0001), rounded up."""
    return -(-rate[0] * 10_000 // rate[1])


async def account_info(ctx: ApiContext, req: ApiRequest) -> Any:
    """Balances (``free`` = available, ``locked`` = held, in each asset's decimals) of every
    asset the markets trade, and the commission rates (the highest of the markets')."""
    params = req.params
    account = req.signer
    omit_zero = params.boolean("omitZeroBalances")
    params.finish()
    gateway = ctx.gateway
    units = gateway.asset_units
    view = gateway.balances
    rows = ([] if view is None
            else [(asset, *view.get(account.id, asset)) for asset in sorted(units)])
    if omit_zero:
        rows = [r for r in rows if r[1] or r[2]]
    markets = ctx.config.markets
    maker, taker = _highest(markets, True), _highest(markets, False)
    return {
        "makerCommission": _bps(maker), "takerCommission": _bps(taker),
        "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": rate_text(*maker), "taker": rate_text(*taker),
                            "buyer": rate_text(0, 1), "seller": rate_text(0, 1)},
        "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False,
        "updateTime": ctx.now_ms(), "accountType": "SPOT",
        "balances": balances_json(rows, units), "permissions": ["SPOT"],
        "uid": zlib.crc32(account.id.encode()),
    }


async def commission(ctx: ApiContext, req: ApiRequest) -> Any:
    """``GET /api/v3/account/commission``: the market's maker and taker fees."""
    params = req.params
    market = _market(ctx, params)
    params.finish()
    zero = rate_text(0, 1)
    zeros = {"maker": zero, "taker": zero, "buyer": zero, "seller": zero}
    return {
        "symbol": binance_symbol(market.symbol),
        "standardCommission": {"maker": rate_text(market.maker_num, market.fee_den),
                               "taker": rate_text(market.taker_num, market.fee_den),
                               "buyer": zero, "seller": zero},
        "specialCommission": zeros, "taxCommission": zeros,
        "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                     "discountAsset": "", "discount": zero},
    }


async def empty_signed_list(ctx: ApiContext, req: ApiRequest) -> Any:
    """A signed ``sapi`` list of a product the account does not have: ``[]``."""
    return []
