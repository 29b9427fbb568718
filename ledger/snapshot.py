"""Take and restore a ledger's complete state (schema: ``contract.risk.RiskSnapshot``).

A snapshot holds every balance (sorted by account and asset), every open
order's hold in placement order, the applied transfer refs (sorted), the
market positions, deposits minus withdrawals per asset and the counters.
Restoring it and applying the commands that followed gives identical events
and forwards to never having stopped. The outbox is not part of it: what was
forwarded before the snapshot was forwarded before it was committed. Cost:
O(balances + orders + refs) both ways.
"""

from __future__ import annotations

from collections.abc import Mapping

from contract.ids import parse_id
from contract.market import Market
from contract.risk import (
    FEE_ACCOUNT,
    RISK_SNAPSHOT_VERSION,
    AccountBalance,
    HeldOrder,
    RiskSnapshot,
)
from ledger.core import Hold, Ledger


def take_risk_snapshot(ledger: Ledger, last_input_id: str = "0-0",
                       last_out_id: str = "0-0") -> RiskSnapshot:
    """Capture ``ledger`` as of ``last_input_id`` (copies: the ledger may go on at once)."""
    balances = [AccountBalance(account, asset, row[0], row[1])
                for account in sorted(ledger.accounts)
                for asset, row in sorted(ledger.accounts[account].items())]
    orders = [HeldOrder(o.order_id, o.account, o.symbol, o.client_order_id, o.side, o.type,
                        o.asset, o.hold, o.price, o.qty, o.cum_qty, o.fee_num, o.quote_qty,
                        list(o.pending_amends), o.max_price, o.max_qty)
              for o in ledger.orders.values()]
    return RiskSnapshot(RISK_SNAPSHOT_VERSION, ledger.shard, last_input_id, last_out_id,
                        ledger.seq, ledger.risk_seq, balances, orders, sorted(ledger.refs),
                        dict(sorted(ledger.positions.items())),
                        dict(sorted(ledger.net_transfers.items())))


def restore_ledger(markets: Mapping[str, Market], fee_account: str,
                   snap: RiskSnapshot) -> Ledger:
    """Rebuild the ledger a snapshot was taken of; then apply the entries after it.

    Raises ``ValueError`` if an order names a market not in ``markets``.
    Settled trade flows are not stored: they are what the balances hold
    beyond deposits minus withdrawals, so ``_check`` audits from here on.
    """
    ledger = Ledger(snap.shard, markets, fee_account or FEE_ACCOUNT)
    ledger.seq = snap.seq
    ledger.risk_seq = snap.risk_seq
    for b in snap.balances:
        ledger.accounts.setdefault(b.account, {})[b.asset] = [b.available, b.held]
    for h in snap.orders:
        if h.symbol not in ledger.markets:
            raise ValueError(f"snapshot order {h.order_id} is in unknown market {h.symbol}")
        ledger.orders[h.order_id] = Hold(
            h.order_id, h.account, h.symbol, h.client_order_id, h.side, h.type, h.asset,
            h.hold, h.price, h.qty, h.cum_qty, h.fee_num, h.quote_qty, list(h.pending_amends),
            h.max_price, h.max_qty)
        if h.client_order_id is not None:
            ledger.client_ids.setdefault((h.account, h.client_order_id), []).append(h.order_id)
        for request_id in h.pending_amends:
            ledger.amends.setdefault(request_id, []).append(h.order_id)
    ledger.refs = {(account, ref) for account, ref in snap.refs}
    ledger.positions = dict(snap.positions)
    ledger._settled = {symbol: parse_id(out_id) for symbol, out_id in snap.positions.items()}
    ledger.net_transfers = dict(snap.net_transfers)
    totals = ledger.totals()
    ledger.net_trades = {asset: total - ledger.net_transfers.get(asset, 0)
                         for asset, total in sorted(totals.items())
                         if total != ledger.net_transfers.get(asset, 0)}
    return ledger
