"""`streamex history`: every market's and risk shard's events into the database, exactly once.

- ``history.project``: stream entries -> rows (pure, deterministic);
- ``history.service``: the process: follow the streams, write batches with their positions.
"""
