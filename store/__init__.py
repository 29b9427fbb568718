"""The history database: versioned schema, connections (SQLite, PostgreSQL) and queries."""
