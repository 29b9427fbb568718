"""Every account's balances as the risk stage committed them, rebuilt from Redis data (no I/O).

Like the open-orders view: the gateway loads each risk shard's snapshot
(:meth:`BalancesView.load_snapshot`) and then applies every ``Balance``
event of ``sx:{acct-K}:out`` after the snapshot's ``last_out_id``
(:meth:`BalancesView.apply`), so the view equals the risk engines' balances
as of the last entry read. A balance is kept per shard and read as the sum:
an account trades in one shard only, but the fee account is credited by
every shard with the fees of its accounts. Amounts are integers in each
asset's smallest unit; ``account.balances`` formats them
(``contract.market.format_units``). Costs: O(1) per event, O(a log a) for an
account's a assets (times its shards: one, but for the fee account).
"""

from __future__ import annotations

from contract.risk import Balance, RiskSnapshot


class BalancesView:
    """``account -> asset -> shard -> (available, held)``."""

    def __init__(self) -> None:
        self._balances: dict[str, dict[str, dict[int, tuple[int, int]]]] = {}

    def load_snapshot(self, snap: RiskSnapshot) -> None:
        """Set shard ``snap.shard``'s part of every balance of the snapshot."""
        for b in snap.balances:
            self._set(snap.shard, b.account, b.asset, b.available, b.held)

    def apply(self, shard: int, event: Balance) -> None:
        """Shard ``shard``'s new balance of an account's asset. O(1)."""
        self._set(shard, event.account, event.asset, event.available, event.held)

    def of(self, account: str) -> list[tuple[str, int, int]]:
        """``(asset, available, held)`` of every asset the account has touched, by asset."""
        assets = self._balances.get(account)
        if not assets:
            return []
        return [(asset, *_total(assets[asset])) for asset in sorted(assets)]

    def get(self, account: str, asset: str) -> tuple[int, int]:
        """``(available, held)`` of one asset; ``(0, 0)`` when the account never had it."""
        parts = self._balances.get(account, {}).get(asset)
        return (0, 0) if parts is None else _total(parts)

    def _set(self, shard: int, account: str, asset: str, available: int, held: int) -> None:
        self._balances.setdefault(account, {}).setdefault(asset, {})[shard] = (available, held)


def _total(parts: dict[int, tuple[int, int]]) -> tuple[int, int]:
    if len(parts) == 1:
        return next(iter(parts.values()))
    return sum(p[0] for p in parts.values()), sum(p[1] for p in parts.values())
