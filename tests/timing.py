"""The suite's one clock policy: every timeout scales by ``STREAMEX_TEST_TIMEOUT_SCALE``.

On a slow or loaded machine (``stress --cpu 2`` beside the suite, a CI
runner) set ``STREAMEX_TEST_TIMEOUT_SCALE=3``: every wait below, every
helper's timeout and pytest's per-test timeout (``conftest.py``) grow
alike. Nothing in the suite sleeps to let something happen: it waits for
the condition (:func:`wait_until`, :func:`wait_until_async`), bounded by a
scaled timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

SCALE = float(os.environ.get("STREAMEX_TEST_TIMEOUT_SCALE", "1") or "1")
if SCALE <= 0:
    raise ValueError("STREAMEX_TEST_TIMEOUT_SCALE must be positive")


def scaled(seconds: float) -> float:
    """``seconds`` times the suite's scale factor."""
    return seconds * SCALE


TIMEOUT_S = scaled(15.0)
"""The default bound of a wait for something that should happen soon."""


def wait_until(predicate: Callable[[], Any], timeout_s: float = TIMEOUT_S,
               what: str = "condition", poll_s: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}")
        time.sleep(poll_s)


async def wait_until_async(predicate: Callable[[], Any | Awaitable[Any]],
                           timeout_s: float = TIMEOUT_S, what: str = "condition",
                           poll_s: float = 0.01) -> Any:
    """:func:`wait_until` for asyncio tests; ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}")
        await asyncio.sleep(poll_s)
