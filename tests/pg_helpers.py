"""The history tests' databases: a real PostgreSQL server (one cluster per session, a fresh
database per test), SQLite files, and a dump of every table to compare two databases.

Load the fixtures with ``pytest_plugins = ("pg_helpers",)`` in a test module:

- ``pg_server`` (session): a cluster made with Debian's ``initdb`` (found under
  ``/usr/lib/postgresql/*/bin``) in a temporary directory, password (scram)
  authentication, listening only on 127.0.0.1 on a free port, its unix socket
  in that directory; stopped with ``pg_ctl stop -m immediate`` at the end. As
  root it runs as ``nobody`` (PostgreSQL refuses to run as root). Durability
  is off (``fsync``): the tests kill clients, never the server. No PostgreSQL
  installed fails the test, saying how to install it.
- ``pg_url``: a new database on it (``CREATE DATABASE``), as a ``postgresql://`` URL.
- ``db_url``: parametrized over ``sqlite`` (a file in ``tmp_path``) and
  ``postgresql`` (``pg_url``): the same test on both engines.

:func:`dump_tables` reads every table of a history database in key order. (Test modules
both import from here and load it as a plugin: PYTEST_DONT_REWRITE.)
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest
from timing import TIMEOUT_S

from streamex.redis_server import free_port

USER = "streamex"
INSTALL_HINT = ("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin): "
                "install Debian's postgresql (scripts/install-system-deps postgresql, or "
                "apt-get install postgresql)")


def pg_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, pg_ctl and postgres."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        d = Path(path)
        if all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            version = d.parent.name
            found.append((int(version) if version.isdigit() else 0, d))
    return max(found)[1] if found else None


STALE_S = 300.0
DIR_PREFIX = "streamex-pg-"
"""Each cluster's directory in the temporary directory (parents must be traversable by its
unprivileged owner, so not under pytest's 0700 base directory)."""


def sweep_stale_clusters() -> None:
    """Remove the cluster directories of earlier runs that were killed before their teardown
    (their server died with them: PR_SET_PDEATHSIG): one whose ``postmaster.pid`` names no
    live process, or that has none and is older than a start takes. O(directories)."""
    for path in Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        pid_file = path / "data" / "postmaster.pid"
        try:
            if not pid_file.exists():
                if time.time() - path.stat().st_mtime < STALE_S:
                    continue  # another run is creating it
            else:
                os.kill(int(pid_file.read_text().split()[0]), 0)
                continue  # a live server: another run's
        except ProcessLookupError:
            pass
        except (OSError, ValueError, IndexError):
            continue  # unreadable: not ours to judge
        shutil.rmtree(path, ignore_errors=True)


class PostgresServer:
    """One throwaway PostgreSQL cluster; :meth:`start`, :meth:`database`, :meth:`stop`."""

    def __init__(self) -> None:
        self.password = secrets.token_hex(16)
        self.port = 0
        self.dir: Path | None = None
        self._bin: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ids = itertools.count()
        root = os.geteuid() == 0
        self._uid, self._gid = ((pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
                                if root else (os.getuid(), os.getgid()))

    def _as_owner(self) -> None:
        """In the child before exec: become the cluster's owner, die with the test run."""
        if os.geteuid() != self._uid:
            os.setgroups([])
            os.setgid(self._gid)
            os.setuid(self._uid)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG

    def _run(self, *args: str) -> None:
        done = subprocess.run(args, preexec_fn=self._as_owner, cwd=self.dir, env=self._env(),
                              capture_output=True, text=True, timeout=TIMEOUT_S * 4)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n"
                               f"{done.stderr}")

    def _env(self) -> dict[str, str]:
        assert self.dir is not None
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir),
                "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def start(self) -> PostgresServer:
        self._bin = pg_bin()
        if self._bin is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        sweep_stale_clusters()
        self.dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        os.chown(self.dir, self._uid, self._gid)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, self._uid, self._gid)
        pwfile.chmod(0o600)
        data = self.dir / "data"
        self._run(str(self._bin / "initdb"), "-D", str(data), "-U", USER, "--pwfile",
                  str(pwfile), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        self._log = (self.dir / "server.log").open("ab")
        for _ in range(5):  # the free port may be taken before the server binds it
            self.port = free_port()
            self._proc = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                 "-p", str(self.port), "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                preexec_fn=self._as_owner, cwd=self.dir, env=self._env(),
                stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def log(self) -> str:
        path = None if self.dir is None else self.dir / "server.log"
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._ids)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None and self._bin is not None:
            with contextlib.suppress(subprocess.SubprocessError, RuntimeError):
                self._run(str(self._bin / "pg_ctl"), "stop", "-D", str(self.dir) + "/data",
                          "-m", "immediate", "-w")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(TIMEOUT_S)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.database()


TABLES: dict[str, str] = {
    "stream_positions": "stream",
    "orders": "symbol, order_id",
    "executions": "stream, seq",
    "trades": "symbol, trade_id",
    "candles": "symbol, interval, open_time",
    "balances": "account, asset, shard",
    "balance_changes": "shard, seq",
    "transfers": "shard, seq",
    "gaps": "stream, lost_from_seq",
}
"""Every table of the history schema -> its primary key (the order of :func:`dump_tables`)."""


def dump_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database at ``url``, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite://"):])
        try:
            for table, key in TABLES.items():
                out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        finally:
            conn.close()
        return out
    with psycopg.connect(url) as pg:
        for table, key in TABLES.items():
            out[table] = [tuple(r) for r in
                          pg.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()]
    return out
