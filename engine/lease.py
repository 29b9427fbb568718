"""The market's leader lease and fencing epoch: acquire, renew, release.

One round trip each (a script of ``engine.scripts``). The lease names the
active engine and expires unless renewed; the epoch increments on every
acquisition, and every commit checks it, so an engine that lost the lease
can never write again.
"""

from __future__ import annotations

from contract.keys import MarketKeys
from engine.exceptions import Fenced, StateLost
from engine.scripts import ACQUIRE_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT
from engine.topology import Topology


def acquire(topology: Topology, keys: MarketKeys, me: str, lease_ms: int) -> int | None:
    """Take the market's lease if free (or already ``me``'s); return the new epoch.

    None means another engine holds it: stay a standby and try again later.
    On success the caller must recover the market before reading anything.
    """
    epoch = ACQUIRE_SCRIPT(topology.control(keys.lease), (keys.lease, keys.epoch), me, lease_ms)
    return None if epoch is None else int(epoch)


def renew(topology: Topology, keys: MarketKeys, me: str, lease_ms: int, epoch: int) -> None:
    """Extend the lease; raises :class:`Fenced` or :class:`StateLost` if it is no longer ours."""
    result = RENEW_SCRIPT(topology.control(keys.lease), (keys.lease, keys.epoch), me, lease_ms,
                          epoch)
    if result == -1:
        raise StateLost(f"{keys.epoch} is gone")
    if result != 1:
        raise Fenced(f"lease of {keys.symbol} is held by another engine")


def release(topology: Topology, keys: MarketKeys, me: str, epoch: int) -> bool:
    """Drop the lease (clean stop) so a standby takes over without waiting for expiry."""
    return bool(RELEASE_SCRIPT(topology.control(keys.lease), (keys.lease, keys.epoch), me, epoch))
