"""The matching core: order book, price-time matching, snapshots; pure and deterministic.

Runs inside the market engine process (``engine``) and in tests and
benchmarks. No I/O: it imports only ``contract``, msgspec and sortedcontainers.
"""
