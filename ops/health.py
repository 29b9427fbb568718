"""What ``/healthz`` and ``/readyz`` answer for one process.

Alive (``/healthz``) means the process answers at all. Ready (``/readyz``)
means every registered check passes: each check is a callable returning
None when fine, else a short reason (``"redis unreachable"``, ``"catching
up: 1200 entries behind"``). Checks run on the thread that serves the HTTP
request: they read state the service keeps up to date and do no I/O of
their own. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable

Check = Callable[[], str | None]


class Health:
    """The readiness checks of one service (``service`` names it in answers)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._checks: dict[str, Check] = {}

    def add_check(self, name: str, check: Check) -> None:
        """Register (or replace) the check ``name``."""
        self._checks[name] = check

    def failures(self) -> dict[str, str]:
        """Every failing check with its reason (empty: ready). A check that raises fails
        with the exception's text. O(checks)."""
        failed: dict[str, str] = {}
        for name, check in list(self._checks.items()):
            try:
                reason = check()
            except Exception as exc:  # a broken check must not break the endpoint
                reason = f"check failed: {exc!r}"
            if reason is not None:
                failed[name] = reason
        return failed
