"""The market engine process: drives one ``matching`` book per market from Redis Streams.

Synchronous redis-py I/O, one module per job: ``topology`` (which node serves
each market, one server or a cluster, and the connections to it),
``scripts`` (the Lua scripts), ``lease`` (lease and epoch), ``channel`` (the
pipelined commit + read), ``snapshots`` (snapshot write and trim),
``recovery`` (snapshot + replay + claim), ``runner`` (the loop) and
``exceptions``.
"""
