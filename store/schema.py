"""The schema and its versions: plain SQL files ``store/migrations/NNNN_name.sql``, in order.

Each file runs unchanged on SQLite and PostgreSQL (BIGINT, TEXT; no
SERIAL/AUTOINCREMENT) and is applied in one transaction together with its
row in ``schema_migrations(version)``, so a crash leaves it applied or not.
``store.db`` applies the missing ones when it opens a database; writers that
open the same database at once serialize on a lock (SQLite: the write lock,
PostgreSQL: an advisory lock) and re-check inside it. The files ship as
package data and are read with ``importlib.resources``. No I/O beyond that.
"""

from __future__ import annotations

import importlib.resources
import re
import sqlite3
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

SCHEMA_MIGRATIONS = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_ts BIGINT NOT NULL
)"""


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, by version. Raises ``ValueError`` for two
    files of one version. Cost: reads the files."""
    found: dict[int, Migration] = {}
    for entry in _migrations_dir().iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations of version {version}: {found[version].name}, "
                             f"{entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _migrations_dir() -> Traversable:
    """``store/migrations`` as package data; beside this file when ``store`` was installed
    as a namespace package (an editable install made before it had an ``__init__``)."""
    try:
        return importlib.resources.files("store").joinpath("migrations")
    except (NotADirectoryError, TypeError):
        return Path(__file__).resolve().parent / "migrations"


def split_statements(sql: str) -> list[str]:
    """``sql`` as single statements (for SQLite, which runs one per call), comments and
    all; ``sqlite3.complete_statement`` finds their ends (it knows quotes and comments)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
            not ln.strip() or ln.strip().startswith("--") for ln in buffer.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end: {buffer.strip()[:80]!r}")
    return statements
