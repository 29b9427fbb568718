"""Writing the market's snapshot and trimming its streams behind it (one script)."""

from __future__ import annotations

from contract.keys import MarketKeys
from engine.scripts import SNAPSHOT_SCRIPT
from engine.topology import Topology


def write_snapshot(topology: Topology, keys: MarketKeys, epoch: int, snapshot: bytes,
                   last_input_id: bytes, out_retention: int) -> tuple[int, int]:
    """Store ``snapshot`` (taken at ``last_input_id``) and trim both streams behind it.

    ``:in`` keeps every entry from ``last_input_id`` on (XTRIM MINID), so
    nothing the snapshot does not cover is ever removed. Returns the numbers
    of entries trimmed from ``:in`` and ``:out``. One round trip.
    """
    trimmed_in, trimmed_out = SNAPSHOT_SCRIPT(
        topology.control(keys.snap), (keys.input, keys.epoch, keys.output, keys.snap), epoch,
        snapshot,
        last_input_id, out_retention)
    return int(trimmed_in), int(trimmed_out)
