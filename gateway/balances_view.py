"""Every account's balances as the risk stage committed them, rebuilt from Redis data (no I/O).

Like the open-orders view: the gateway loads each risk shard's snapshot
(:meth:`BalancesView.load_snapshot`) and then applies every ``Balance``
event of ``sx:{acct-K}:out`` after the snapshot's ``last_out_id``
(:meth:`BalancesView.apply`), so the view equals the risk engines' balances
as of the last entry read. Amounts are integers in each asset's smallest
unit; ``account.balances`` formats them (``gateway.reports.format_amount``).
Costs: O(1) per event, O(a log a) for an account's a assets.
"""

from __future__ import annotations

from contract.risk import Balance, RiskSnapshot


class BalancesView:
    """``account -> asset -> (available, held)``."""

    def __init__(self) -> None:
        self._balances: dict[str, dict[str, tuple[int, int]]] = {}

    def load_snapshot(self, snap: RiskSnapshot) -> None:
        """Set the balances of every account of the snapshot (its shard's accounts)."""
        for b in snap.balances:
            self._balances.setdefault(b.account, {})[b.asset] = (b.available, b.held)

    def apply(self, event: Balance) -> None:
        """An account's new balance of one asset. O(1)."""
        self._balances.setdefault(event.account, {})[event.asset] = (event.available,
                                                                      event.held)

    def of(self, account: str) -> list[tuple[str, int, int]]:
        """``(asset, available, held)`` of every asset the account has touched, by asset."""
        assets = self._balances.get(account)
        if not assets:
            return []
        return [(asset, *assets[asset]) for asset in sorted(assets)]

    def get(self, account: str, asset: str) -> tuple[int, int]:
        """``(available, held)`` of one asset; ``(0, 0)`` when the account never had it."""
        return self._balances.get(account, {}).get(asset, (0, 0))

    def touched(self, account: str, asset: str) -> bool:
        """True when the account has a balance row for ``asset``."""
        return asset in self._balances.get(account, {})
