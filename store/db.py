"""Connections to the history database, its writes and its resume state.

:func:`open_store` takes ``sqlite:///<absolute path>`` (stdlib ``sqlite3``:
WAL, the file created 0600 and its directory 0700 if missing) or
``postgresql://...`` (psycopg 3, synchronous) and applies the missing
migrations (``store.schema``). The :class:`Store` it returns is
thread-safe:

- reads (the methods of ``store.queries.Queries``) run on one connection
  per calling thread, opened on first use, so asyncio callers can use
  ``asyncio.to_thread`` freely; on SQLite's WAL they never wait for a write;
- :meth:`Store.write` commits a ``store.batch.Batch`` in one transaction on
  the writer connection (under a lock): first the conditional update of
  every stream position it moves (``... WHERE stream = ? AND last_id = ?``
  with the position the writer resumed from), then the rows. If a position
  is not what the writer expected, another writer moved it: everything is
  rolled back and :class:`PositionConflict` raised, so even two history
  processes on one database never write an entry twice (the caller reloads
  :meth:`Store.load_state` and reads on from there).

On SQLite ``synchronous=NORMAL``: a power loss may undo the last commits,
never half of one, and positions go back with their rows, so the writer
reads those entries again. Driver errors come out as :class:`StoreError`;
a lost PostgreSQL connection is reopened by the next call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from candles.core import INTERVALS
from store.batch import Batch, ResumeState
from store.queries import CANDLE_COLUMNS, OPEN_STATUSES, Queries, Row, candle_row
from store.schema import SCHEMA_MIGRATIONS, Migration, migrations, split_statements

log = logging.getLogger("streamex.store")

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite write waits for another writer's transaction (two history processes)."""
PG_CONNECT_TIMEOUT_S = 10
_PG_MIGRATION_LOCK = 0x5354_5245_414D  # pg_advisory_xact_lock key: "STREAM"


class StoreError(Exception):
    """The database failed (unreachable, locked too long, a constraint broken): the write
    did not happen. The message names the driver's error."""


class PositionConflict(StoreError):
    """A stream's position was not what the writer expected: another writer moved it.
    Nothing was written; reload :meth:`Store.load_state` and read on from there."""


# -- SQL of the writes -----------------------------------------------------------------

_POSITION_UPDATE = ("UPDATE stream_positions SET last_id = ?, last_seq = ? "
                    "WHERE stream = ? AND last_id = ?")
_POSITION_INSERT = "INSERT INTO stream_positions (stream, last_id, last_seq) VALUES (?, ?, ?)"


class _Table(NamedTuple):
    """How one table of a batch is written: its columns and, for an upsert, the key and the
    ``SET`` of ``ON CONFLICT (key) DO UPDATE`` (the same text on both engines)."""

    name: str
    columns: str
    key: str | None = None
    update: str = ""

    def insert_sql(self) -> str:
        """``INSERT ... VALUES (?, ...)`` [``ON CONFLICT ...``] for ``executemany``."""
        values = ", ".join("?" * (self.columns.count(",") + 1))
        sql = f"INSERT INTO {self.name} ({self.columns}) VALUES ({values})"
        return sql if self.key is None else f"{sql} {self.conflict()}"

    def conflict(self) -> str:
        return f"ON CONFLICT ({self.key}) DO UPDATE SET {self.update}"


_ORDERS = _Table(
    "orders", "symbol, order_id, order_number, account, client_order_id, side, type, tif, "
    "price, qty, quote_qty, status, cum_qty, cum_notional, fee, reason, created_ts, "
    "working_ts, updated_ts, last_seq, stop_price, expire_time, display_qty, trigger_ts",
    "symbol, order_id",
    "price = excluded.price, qty = excluded.qty, stop_price = excluded.stop_price, "
    "display_qty = excluded.display_qty, "
    "trigger_ts = COALESCE(orders.trigger_ts, excluded.trigger_ts), "
    "quote_qty = COALESCE(excluded.quote_qty, orders.quote_qty), status = excluded.status, "
    "cum_qty = excluded.cum_qty, cum_notional = excluded.cum_notional, fee = excluded.fee, "
    "reason = COALESCE(excluded.reason, orders.reason), "
    "working_ts = COALESCE(orders.working_ts, excluded.working_ts), "
    "updated_ts = excluded.updated_ts, last_seq = excluded.last_seq")
_EXECUTIONS = _Table(
    "executions", "stream, seq, symbol, ts, account, order_id, client_order_id, exec_type, "
    "status, side, price, qty, last_qty, last_price, cum_qty, leaves_qty, cum_notional, "
    "liquidity, trade_id, fee, reason")
_TRADES = _Table(
    "trades", "symbol, trade_id, seq, ts, price, qty, taker_side, maker_order_id, "
    "taker_order_id")
_CANDLES = _Table(
    "candles", "symbol, interval, open_time, close_time, open, high, low, close, volume, "
    "quote_volume, trades, closed", "symbol, interval, open_time",
    "close_time = excluded.close_time, open = excluded.open, high = excluded.high, "
    "low = excluded.low, close = excluded.close, volume = excluded.volume, "
    "quote_volume = excluded.quote_volume, trades = excluded.trades, closed = excluded.closed")
_BALANCES = _Table(
    "balances", "shard, account, asset, available, held, seq, ts", "account, asset, shard",
    "available = excluded.available, held = excluded.held, seq = excluded.seq, "
    "ts = excluded.ts")
_BALANCE_CHANGES = _Table("balance_changes", "shard, seq, account, asset, available, held, ts")
_TRANSFERS = _Table(
    "transfers", "shard, seq, ts, direction, account, asset, amount, ref, status, reason")
_GAPS = _Table("gaps", "stream, after_id, first_id, lost_from_seq, lost_to_seq, noted_ts")
_UPSERTS = (_ORDERS, _CANDLES, _BALANCES)


def _row_sets(batch: Batch) -> list[tuple[_Table, Sequence[Sequence[object]]]]:
    """(table, rows) of a batch in the order they are written (empty ones skipped)."""
    pairs: list[tuple[_Table, Sequence[Sequence[object]]]] = [
        (_ORDERS, batch.orders), (_EXECUTIONS, batch.executions), (_TRADES, batch.trades),
        (_CANDLES, batch.candles), (_BALANCES, batch.balances),
        (_BALANCE_CHANGES, batch.balance_changes), (_TRANSFERS, batch.transfers),
        (_GAPS, batch.gaps)]
    return [(table, rows) for table, rows in pairs if rows]


# -- the two engines -----------------------------------------------------------------------


class _Backend(ABC):
    """One database engine: how to connect, run SQL and tell its errors apart."""

    dialect: str
    errors: tuple[type[BaseException], ...]

    @abstractmethod
    def connect(self, writer: bool) -> Any: ...

    @abstractmethod
    def begin(self, conn: Any, snapshot: bool = False) -> None:
        """Start a write transaction (``snapshot``: a read-only one seeing one state)."""

    @abstractmethod
    def commit(self, conn: Any) -> None: ...

    @abstractmethod
    def rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def execute(self, conn: Any, sql: str, params: Sequence[object]) -> int:
        """Run one statement; the rows it changed."""

    def write_rows(self, conn: Any, table: _Table, rows: Sequence[Sequence[object]]) -> None:
        """Insert (or upsert) ``rows`` into ``table`` inside the open transaction."""
        self.executemany(conn, table.insert_sql(), rows)

    @abstractmethod
    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    @abstractmethod
    def query(self, conn: Any, sql: str, params: Sequence[object]) -> list[Row]: ...

    @abstractmethod
    def create_migrations_table(self, conn: Any) -> None:
        """``schema_migrations`` if missing (safe against a concurrent opener)."""

    @abstractmethod
    def apply_migration(self, conn: Any, migration: Migration) -> bool:
        """Apply ``migration`` in one transaction unless it already is; True if applied."""

    @abstractmethod
    def explain(self, conn: Any, sql: str, params: Sequence[object]) -> str: ...

    def is_unique_violation(self, exc: BaseException) -> bool:
        return False

    def is_broken(self, conn: Any) -> bool:
        return False

    def close(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()


class _Sqlite(_Backend):
    dialect = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self, writer: bool) -> sqlite3.Connection:
        if writer and not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        # Autocommit mode (isolation_level None): transactions are the explicit BEGINs.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        if writer:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA cache_size = -65536")
        else:
            conn.execute("PRAGMA query_only = 1")
        return conn

    def begin(self, conn: Any, snapshot: bool = False) -> None:
        # IMMEDIATE takes the write lock now: a second writer waits here, then sees the
        # first one's positions (and conflicts) instead of failing at its first write.
        conn.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")

    def commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def execute(self, conn: Any, sql: str, params: Sequence[object]) -> int:
        return int(conn.execute(sql, params).rowcount)

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> None:
        conn.executemany(sql, rows)

    def query(self, conn: Any, sql: str, params: Sequence[object]) -> list[Row]:
        rows: list[Row] = conn.execute(sql, params).fetchall()
        return rows

    def create_migrations_table(self, conn: Any) -> None:
        conn.execute(SCHEMA_MIGRATIONS)

    def apply_migration(self, conn: Any, migration: Migration) -> bool:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?",
                            (migration.version,)).fetchone():
                conn.execute("ROLLBACK")
                return False
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_ts) "
                         "VALUES (?, ?, ?)", (migration.version, migration.name, _now_ms()))
            conn.execute("COMMIT")
            return True
        except BaseException:
            self.rollback(conn)
            raise

    def explain(self, conn: Any, sql: str, params: Sequence[object]) -> str:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return "\n".join(str(r[-1]) for r in rows)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)


class _Postgres(_Backend):
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self._sql: dict[str, str] = {}
        self._temp_tables: dict[int, set[str]] = {}
        """id(connection) -> its temporary tables (dropped with the connection)."""

    def _pg(self, sql: str) -> str:
        """``?`` placeholders as psycopg's ``%s`` (no statement here has a literal ?)."""
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = sql.replace("?", "%s")
        return converted

    def connect(self, writer: bool) -> Any:
        return self._psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=PG_CONNECT_TIMEOUT_S)

    def begin(self, conn: Any, snapshot: bool = False) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if snapshot else "BEGIN")

    def commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        if not conn.closed and conn.info.transaction_status != 0:  # 0: idle, no transaction
            conn.execute("ROLLBACK")

    def execute(self, conn: Any, sql: str, params: Sequence[object]) -> int:
        return int(conn.execute(self._pg(sql), params).rowcount)

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(self._pg(sql), rows)

    def query(self, conn: Any, sql: str, params: Sequence[object]) -> list[Row]:
        rows: list[Row] = conn.execute(self._pg(sql), params).fetchall()
        return rows

    def write_rows(self, conn: Any, table: _Table, rows: Sequence[Sequence[object]]) -> None:
        # COPY: one round trip and no statement per row (executemany is ~4x slower). An
        # upsert goes through a temporary table of the same shape, emptied at commit.
        target = table.name
        if table.key is not None:
            target = f"incoming_{table.name}"
            if target not in self._temp_tables.setdefault(id(conn), set()):
                conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {target} "
                             f"(LIKE {table.name}) ON COMMIT DELETE ROWS")
                self._temp_tables[id(conn)].add(target)
        with conn.cursor() as cur, cur.copy(
                f"COPY {target} ({table.columns}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        if table.key is not None:
            conn.execute(f"INSERT INTO {table.name} ({table.columns}) SELECT {table.columns} "
                         f"FROM {target} {table.conflict()}")

    def create_migrations_table(self, conn: Any) -> None:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
            conn.execute(SCHEMA_MIGRATIONS)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback(conn)
            raise

    def apply_migration(self, conn: Any, migration: Migration) -> bool:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s",
                            (migration.version,)).fetchone():
                conn.execute("ROLLBACK")
                return False
            conn.execute(migration.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_ts) "
                         "VALUES (%s, %s, %s)", (migration.version, migration.name, _now_ms()))
            conn.execute("COMMIT")
            return True
        except BaseException:
            self.rollback(conn)
            raise

    def explain(self, conn: Any, sql: str, params: Sequence[object]) -> str:
        # PostgreSQL picks a sequential scan (and a sort, or an incremental one over another
        # index's order) over a small table whatever the indexes: forbid them for the plan,
        # so it shows whether an index can serve.
        conn.execute("BEGIN")
        try:
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_sort = off")
            conn.execute("SET LOCAL enable_incremental_sort = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            rows = conn.execute("EXPLAIN " + self._pg(sql), params).fetchall()
        finally:
            conn.execute("ROLLBACK")
        return "\n".join(str(r[0]) for r in rows)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def close(self, conn: Any) -> None:
        self._temp_tables.pop(id(conn), None)
        super().close(conn)


def _now_ms() -> int:
    return int(time.time() * 1000)


_PASSWORD = re.compile(r"(?<=://)([^:/@]*):[^@/]*@")


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs)."""
    return _PASSWORD.sub(r"\1:***@", url)


# -- the store -------------------------------------------------------------------------------


class Store(Queries):
    """One history database: reads from any thread, :meth:`write` of batches, migrations.

    Build it with :func:`open_store`; :meth:`close` at the end (or use ``with``).
    """

    def __init__(self, backend: _Backend, url: str) -> None:
        self._backend = backend
        self.dialect = backend.dialect
        """``"sqlite"`` or ``"postgresql"``."""
        self.url = display_url(url)
        """The database's URL without its password."""
        self._lock = threading.Lock()
        self._writer: Any = None
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply the migrations the database lacks, each in its own transaction; the
        versions applied now (``[]`` when it was up to date). Cost: one query per
        migration shipped, plus the new ones' SQL."""
        applied: list[int] = []
        with self._writing() as conn:
            self._backend.create_migrations_table(conn)
            for migration in migrations():
                if self._backend.apply_migration(conn, migration):
                    log.info("event=migrated db=%s version=%d name=%s", self.url,
                             migration.version, migration.name)
                    applied.append(migration.version)
        return applied

    def schema_versions(self) -> list[int]:
        """Versions recorded in ``schema_migrations``, ascending."""
        return [int(r[0]) for r in
                self._fetch("SELECT version FROM schema_migrations ORDER BY version", ())]

    # -- writes --------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Commit ``batch`` in one transaction: its positions (conditionally), then its rows.

        Raises :class:`PositionConflict` (nothing written) if a position moved since the
        writer read it, :class:`StoreError` if the database failed (nothing written).
        Cost: one transaction, an ``executemany`` per table with rows.
        """
        backend = self._backend
        with self._writing() as conn:
            backend.begin(conn)
            try:
                for stream, prev_id, last_id, last_seq in sorted(batch.positions):
                    if prev_id is None:
                        try:
                            backend.execute(conn, _POSITION_INSERT, (stream, last_id, last_seq))
                        except backend.errors as exc:
                            if backend.is_unique_violation(exc):
                                raise PositionConflict(
                                    f"{stream}: another writer started it") from None
                            raise
                    elif not backend.execute(conn, _POSITION_UPDATE,
                                             (last_id, last_seq, stream, prev_id)):
                        raise PositionConflict(f"{stream}: another writer moved it past "
                                               f"{prev_id}")
                for table, rows in _row_sets(batch):
                    backend.write_rows(conn, table, rows)
                backend.commit(conn)
            except BaseException:
                with contextlib.suppress(*backend.errors):
                    backend.rollback(conn)
                raise

    def load_state(self, symbols: Sequence[str]) -> ResumeState:
        """What a writer resumes from, read in one snapshot: every stream position, the
        latest candle of each of ``symbols``' series (every interval), and the fees of
        open orders that paid some. Cost: one query per position table row set, one
        lookup per (symbol, interval), one scan of the open orders."""
        backend = self._backend
        with self._writing() as conn:
            backend.begin(conn, snapshot=True)
            try:
                positions = {r[0]: (r[1], int(r[2])) for r in backend.query(
                    conn, "SELECT stream, last_id, last_seq FROM stream_positions", ())}
                candles = {}
                for symbol in symbols:
                    for interval in INTERVALS:
                        rows = backend.query(
                            conn, f"SELECT {CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND "
                            "interval = ? ORDER BY open_time DESC LIMIT 1", (symbol, interval))
                        if rows:
                            candles[(symbol, interval)] = candle_row(rows[0])
                fees = {(r[0], r[1]): int(r[2]) for r in backend.query(
                    conn, "SELECT symbol, order_id, fee FROM orders WHERE "
                    f"status IN {OPEN_STATUSES} AND fee <> '0'", ())}
                backend.commit(conn)
            except BaseException:
                with contextlib.suppress(*backend.errors):
                    backend.rollback(conn)
                raise
        return ResumeState(positions, candles, fees)

    # -- reads -------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[object]) -> list[Row]:
        backend = self._backend
        conn = self._reader()
        try:
            plans: list[tuple[str, str]] | None = getattr(self._local, "plans", None)
            if plans is not None:
                plans.append((sql, backend.explain(conn, sql, params)))
            return backend.query(conn, sql, params)
        except backend.errors as exc:
            if backend.is_broken(conn):
                self._drop_reader(conn)
            raise StoreError(f"{self.dialect}: {exc}") from exc

    def explain(self, call: Callable[[], object]) -> list[tuple[str, str]]:
        """Run ``call`` (reads of this store, in this thread) and return each statement it
        ran with the engine's plan for it (SQLite's ``EXPLAIN QUERY PLAN``, PostgreSQL's
        ``EXPLAIN`` with sequential scans and sorts disabled): how to check that a read
        is an index range scan. Costs one more query per statement."""
        plans: list[tuple[str, str]] = []
        self._local.plans = plans
        try:
            call()
        finally:
            self._local.plans = None
        return plans

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                conn = self._backend.connect(writer=False)
            except self._backend.errors as exc:
                raise StoreError(f"{self.dialect}: cannot connect: {exc}") from exc
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _drop_reader(self, conn: Any) -> None:
        self._local.conn = None
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        self._backend.close(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """The writer connection, under the write lock; driver errors as StoreError (and a
        broken connection dropped, to be reopened by the next call)."""
        backend = self._backend
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._writer is None:
                try:
                    self._writer = backend.connect(writer=True)
                except backend.errors as exc:
                    raise StoreError(f"{self.dialect}: cannot connect: {exc}") from exc
            conn = self._writer
            try:
                yield conn
            except PositionConflict:
                raise
            except backend.errors as exc:
                if backend.is_broken(conn):
                    self._writer = None
                    backend.close(conn)
                raise StoreError(f"{self.dialect}: {exc}") from exc

    def close(self) -> None:
        """Close every connection (idempotent). Reads and writes fail afterwards."""
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                self._backend.close(writer)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            self._backend.close(conn)


def open_store(url: str) -> Store:
    """The history database at ``url``, created and migrated if needed.

    ``sqlite:///<absolute path>`` or ``postgresql://`` (``postgres://``) URLs. Raises
    ``ValueError`` for another URL, :class:`StoreError` if the database cannot be opened
    or migrated. Cost: a connection and the migrations' check.
    """
    backend: _Backend
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite://"):])
        if not path.name:
            raise ValueError(f"{url}: no file name")
        backend = _Sqlite(path)
    elif url.startswith(("postgresql://", "postgres://")):
        backend = _Postgres(url)
    else:
        raise ValueError(f"{display_url(url)}: must start with sqlite:/// or postgresql://")
    store = Store(backend, url)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
