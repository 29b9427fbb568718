"""Service registration: each running process keeps a TTL key in Redis saying what it is.

A process registers as ``sx:{svc}:<service>:<instance>`` (``contract.keys``)
with a JSON :class:`Registration` and a TTL of :data:`TTL_MS`, refreshed
every :data:`REFRESH_S`; a process that dies disappears within the TTL,
and one that stops refreshing is stale after :data:`STALE_MS`.
``streamex status`` lists them (:func:`read_registrations`). All keys share
one hash tag, so on a cluster they live on one node and one SCAN finds
them. Cost: one SET every few seconds per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from redis.cluster import RedisCluster

from contract.keys import SERVICE_KEYS, service_key

log = logging.getLogger("streamex.ops")

TTL_MS = 5_000
"""A registration not refreshed for this long is gone (a killed process vanishes)."""
REFRESH_S = 1.0
"""How often a running process refreshes its registration (one SET)."""
STALE_MS = 2_500
"""A registration older than this has missed refreshes: its process is not responding."""


class Registration(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    """What one process says of itself. ``urls``: its listeners by name (``ws``,
    ``metrics``, ``http``); ``stages``: the markets or risk shards it serves (an engine),
    ``owned`` those it is active for (the others it stands by for)."""

    service: str
    instance: str
    host: str = ""
    pid: int = 0
    started_ms: int = 0
    urls: dict[str, str] = {}
    stages: list[str] = []
    owned: list[str] = []
    updated_ms: int = 0


def new_registration(service: str, instance: str | None = None, **fields: Any) -> Registration:
    """A registration for this process (``instance`` default: ``HOST-PID``)."""
    host = socket.gethostname()
    return Registration(service=service, instance=instance or f"{host}-{os.getpid()}",
                        host=host, pid=os.getpid(), started_ms=int(time.time() * 1000),
                        **fields)


def _entry(reg: Registration) -> tuple[str, bytes]:
    reg.updated_ms = int(time.time() * 1000)
    return service_key(reg.service, reg.instance), msgspec.json.encode(reg)


def refresh(client: redis.Redis | RedisCluster, reg: Registration) -> None:
    """SET the registration with its TTL (one round trip). Raises Redis errors."""
    key, value = _entry(reg)
    client.set(key, value, px=TTL_MS)


def unregister(client: redis.Redis | RedisCluster, reg: Registration) -> None:
    """Remove it at a clean stop (a killed process just expires)."""
    client.delete(service_key(reg.service, reg.instance))


async def keep_registered(client: aioredis.Redis | aioredis.RedisCluster,
                          reg: Registration) -> None:
    """Refresh ``reg`` every :data:`REFRESH_S` until cancelled; Redis errors are logged
    and retried on the next round. Deletes the key when cancelled."""
    try:
        while True:
            key, value = _entry(reg)
            try:
                await client.set(key, value, px=TTL_MS)
            except (redis.RedisError, OSError) as exc:
                log.warning("event=registration_failed service=%s error=%r", reg.service, exc)
            await asyncio.sleep(REFRESH_S)
    except asyncio.CancelledError:
        with contextlib.suppress(redis.RedisError, OSError):
            await asyncio.shield(client.delete(service_key(reg.service, reg.instance)))
        raise


def read_registrations(client: redis.Redis | RedisCluster) -> list[Registration]:
    """Every live registration, sorted by service and instance. O(registrations)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(service_key("x", "x"))  # type: ignore[no-untyped-call]
        keys = list(client.scan_iter(match=SERVICE_KEYS, count=1000, target_nodes=node))
    else:
        keys = list(client.scan_iter(match=SERVICE_KEYS, count=1000))
    regs: list[Registration] = []
    for key in keys:
        raw = client.get(key)
        if raw is None:
            continue  # expired between SCAN and GET
        try:
            regs.append(msgspec.json.decode(raw, type=Registration))
        except msgspec.DecodeError:
            log.warning("event=bad_registration key=%s", key)
    regs.sort(key=lambda r: (r.service, r.instance))
    return regs
