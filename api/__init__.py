"""`streamex api`: the Binance-compatible REST service (PROTOCOL.md, section D)."""
