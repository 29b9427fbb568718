"""Candles and rolling 24-hour statistics from a market's trades (pure, no I/O)."""
