"""Shared fixtures: a real Redis server per test (no mocks across processes).

Timeouts: ``tests/timing.py`` scales every wait by ``STREAMEX_TEST_TIMEOUT_SCALE``;
pytest's per-test timeout (``pyproject.toml``) is scaled here by the same factor.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from timing import SCALE

from streamex.redis_server import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    if SCALE != 1 and config.getoption("timeout", None) is None:
        config.option.timeout = float(config.getini("timeout") or 0) * SCALE


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty Redis server on a free loopback port, data in ``tmp_path``."""
    # die_with_parent: a test run killed mid-way (timeout, Ctrl-C twice) leaves no server.
    server = RedisServer(data_dir=tmp_path / "redis", die_with_parent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:<port>/0`` of the test's own server."""
    return redis_server.url


@pytest.fixture
def cluster_garbage() -> Iterator[None]:
    """For tests of a Redis Cluster: collect after the test what redis-py left unclosed.

    redis-py's cluster clients drop the node objects a slot-map reload replaces
    (after a failover) with their sockets open; the garbage collector closes
    them later, and the ResourceWarning would then fail whichever test runs at
    that moment. They are collected here instead, their warnings ignored:
    only redis-py's own node objects are concerned (the services close theirs,
    ``redisio.topology``).
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
