"""The risk engine process: one account shard's ledger served from its Redis stream."""
