"""Redis key names and the consumer group, in one place (every process imports these).

Every key of a market carries the market's symbol as a hash tag
(``sx:{BTC-USD}:in``), so all keys of one market live in one Redis Cluster
slot and a script may touch any of them together.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_PREFIX = "sx"

#: Consumer group of the engines on each market's input stream.
ENGINE_GROUP = "engine"


def _key(symbol: str, suffix: str) -> str:
    return f"{KEY_PREFIX}:{{{symbol}}}:{suffix}"


def in_stream(symbol: str) -> str:
    """Stream of commands for ``symbol``: ``sx:{SYM}:in``."""
    return _key(symbol, "in")


def out_stream(symbol: str) -> str:
    """Stream of events the engine produced for ``symbol``: ``sx:{SYM}:out``."""
    return _key(symbol, "out")


def snap_key(symbol: str) -> str:
    """String holding the latest engine snapshot of ``symbol``: ``sx:{SYM}:snap``."""
    return _key(symbol, "snap")


def epoch_key(symbol: str) -> str:
    """Fencing token of ``symbol``, incremented on every takeover: ``sx:{SYM}:epoch``."""
    return _key(symbol, "epoch")


def lease_key(symbol: str) -> str:
    """Leader lease of ``symbol`` naming the active engine: ``sx:{SYM}:lease``."""
    return _key(symbol, "lease")


def applied_key(symbol: str) -> str:
    """Last input entry id the engine committed for ``symbol``: ``sx:{SYM}:applied``."""
    return _key(symbol, "applied")


SERVICES_TAG = "svc"
"""Hash tag of the service registrations: all of them live in one cluster slot."""


def service_key(service: str, instance: str) -> str:
    """A running process's registration (a TTL key, refreshed while it runs):
    ``sx:{svc}:<service>:<instance>``."""
    return f"{_key(SERVICES_TAG, service)}:{instance}"


SERVICE_KEYS = _key(SERVICES_TAG, "*")
"""SCAN pattern of every registration."""


@dataclass(frozen=True, slots=True)
class MarketKeys:
    """Every Redis key of one market, all with the same hash tag."""

    symbol: str
    input: str
    output: str
    snap: str
    epoch: str
    lease: str
    applied: str

    @classmethod
    def of(cls, symbol: str) -> MarketKeys:
        return cls(symbol, in_stream(symbol), out_stream(symbol), snap_key(symbol),
                   epoch_key(symbol), lease_key(symbol), applied_key(symbol))
