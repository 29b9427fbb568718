"""The history database: versioned schema, connections (SQLite, PostgreSQL) and queries.

- ``store.db``: :func:`~store.db.open_store` and :class:`~store.db.Store` (writes of
  batches with their stream positions, the resume state, thread-safe reads);
- ``store.queries``: the reads the REST service and the market-data feed make;
- ``store.rows``: the rows they return; ``store.batch``: what a write holds;
- ``store.schema`` and ``store/migrations/*.sql``: the schema's versions.
"""
