"""``streamex up`` as a subprocess, for the tests: its banner, its processes, its files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from timing import scaled

from streamex.config import with_password
from streamex.redis_server import free_port

START_TIMEOUT_S = scaled(40.0)
STOP_TIMEOUT_S = scaled(30.0)


class Up:
    """A running ``streamex up`` with the endpoints and accounts from its banner."""

    def __init__(self, data_dir: Path | None, log_path: Path, server: str | None = None,
                 extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 redis_password: str | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.gateway_port = free_port()
        self.marketdata_port = free_port()
        self._log = log_path.open("ab")
        where = ("--data-dir", str(data_dir)) if data_dir is not None else ()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamex", "up", *where,
             "--gateway-port", str(self.gateway_port),
             "--marketdata-port", str(self.marketdata_port), *extra],
            stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}),
                 **({"STREAMEX_REDIS_SERVER": server} if server else {})},
        )
        try:
            self._read_banner(redis_password)
        except BaseException:  # never leave a started exchange behind a failed test
            self.proc.kill()
            self.proc.wait(10)
            self._log.close()
            raise

    def _read_banner(self, redis_password: str | None) -> None:
        self.accounts = self._wait_banner()
        banner = self.log_path.read_text()
        found = (re.search(r"redis +((?:redis|unix)://\S+)", banner)
                 or re.search(r"redis +cluster of .* seed (redis://\S+)", banner))
        assert found is not None
        self.banner_redis_url = found.group(1)
        auth = re.search(r'REDISCLI_AUTH=("\$\(cat \S+\)"|\S+) redis-cli', banner)
        self.password: str | None = redis_password
        if auth is not None:
            kept = re.fullmatch(r'"\$\(cat (\S+)\)"', auth.group(1))
            self.password = Path(kept.group(1)).read_text().strip() if kept else auth.group(1)
        self.redis_url = (with_password(self.banner_redis_url, self.password)
                          if self.password else self.banner_redis_url)
        with redis.Redis.from_url(self.redis_url) as client:
            self.redis_pid = int(client.info("server")["process_id"])
            self.redis_clients = client.client_list()
        self.descendants = descendants(self.proc.pid)
        # "    <service>  http://HOST:PORT/metrics" lines, in the banner's order.
        self.metrics_urls = dict(re.findall(r"^ {4}(\S.*?) +(http://\S+/metrics)$", banner,
                                            re.MULTILINE))

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway_port}/"

    @property
    def marketdata_url(self) -> str:
        return f"ws://127.0.0.1:{self.marketdata_port}/"

    def _wait_banner(self) -> list[tuple[str, str]]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "Press Ctrl-C to stop." in text:
                assert "streamex is up" in text, text
                return re.findall(r"api_key=(\S+) secret=(\S+)", text)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"streamex up did not start:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL ``streamex up`` itself, as an OOM killer or a crash would."""
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> int:
        """SIGTERM like a service manager would; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children of children included)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry)] = int(fields[1])
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def files_containing(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` whose bytes contain any of ``needles``."""
    hits = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
            else:
                continue
        except OSError:
            continue
        hits += [f"{path}: {n[:6]}..." for n in needles if n.encode() in data]
    return hits


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes mentioning ``path`` (children of ``up`` do)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(f"{pid}: {cmdline}")
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    except OSError:
        return False
    return state != "Z"
