"""The matching engine: markets, commands and events, the order book, snapshots, the runner."""
