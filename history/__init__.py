"""`streamex history`: every market's and risk shard's events into the database, exactly once."""
