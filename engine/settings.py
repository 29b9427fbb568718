"""Engine runner settings: the ``[engine]`` table of the configuration file.

Lives with the engine (the runner takes it); ``streamex.config`` parses and
validates it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Engine runner tuning (see ARCHITECTURE.md, "Commit and recovery")."""

    snapshot_every: int = 10_000
    """Write a snapshot after this many applied commands."""
    snapshot_interval_s: float = 30.0
    """... or after this many seconds with at least one new command."""
    batch_size: int = 512
    """XREADGROUP COUNT: most commands applied and committed together."""
    block_ms: int = 100
    """XREADGROUP BLOCK: longest wait for new commands."""
    lease_ms: int = 3000
    """Leader lease time; a standby takes over this long after a silent leader."""
    out_retention: int = 1_000_000
    """Approximate number of entries kept in each market's event stream."""
