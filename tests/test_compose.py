"""docker-compose.yml, Dockerfile and deploy/: structure, agreement, secrets, healthchecks.

No Docker engine is needed: the compose file is read with a small reader for
the YAML subset it is written in (block mappings and lists, JSON-style flow
lists and quoted strings), checked against what the services need, and run
through ``docker compose config -q`` / ``docker-compose config -q`` as well
when one of them is installed. The healthcheck one-liners are executed for
real against the services' real /readyz endpoint server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ops.health import Health
from ops.http import MetricsServer
from ops.metrics import process_registry
from streamex.config import load_config
from streamex.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG_IN_CONTAINER = "/etc/streamex/streamex.toml"
REDIS_URL = "redis://redis:6379/0"
STREAMEX_SERVICES = ("engine", "risk", "gateway", "marketdata", "history", "api")
MONITORING_SERVICES = ("prometheus", "grafana")
"""Started only with ``--profile monitoring`` (tests/test_deploy.py checks them)."""
HISTORY_VOLUME = "history-data:/var/lib/streamex/history"
"""The history database's volume: written by history, read by api and marketdata."""
PASSWORD_SECRET = "/run/secrets/redis_password"
ACCOUNTS_SECRET = "/run/secrets/streamex_accounts"


# -- a reader for the YAML subset docker-compose.yml is written in ---------------


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith(("[", '"', "{")):
        return json.loads(text)  # flow lists and quoted strings are written JSON-style
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def _strip_comment(line: str) -> str:
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i].rstrip()
    return line.rstrip()


def read_yaml_subset(text: str) -> Any:
    """Block mappings/lists by indentation; values are scalars or JSON-style flow lists."""
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip())
             for raw in map(_strip_comment, text.splitlines()) if raw.strip()]
    assert all("\t" not in s for _, s in lines), "tabs are not YAML indentation"

    def block(pos: int, indent: int) -> tuple[Any, int]:
        if lines[pos][1].startswith("- "):
            items: list[Any] = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                items.append(_scalar(lines[pos][1][2:]))
                pos += 1
            return items, pos
        mapping: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent:
            key, sep, rest = lines[pos][1].partition(":")
            assert sep, f"not a mapping entry: {lines[pos][1]!r}"
            assert key not in mapping, f"duplicate key {key!r}"
            pos += 1
            if rest.strip():
                mapping[key] = _scalar(rest)
            elif pos < len(lines) and lines[pos][0] > indent:
                mapping[key], pos = block(pos, lines[pos][0])
            elif pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                mapping[key], pos = block(pos, indent)
            else:
                mapping[key] = None
        return mapping, pos

    value, end = block(0, lines[0][0])
    assert end == len(lines), f"unparsed line: {lines[end][1]!r}"
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = read_yaml_subset((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_reader_handles_the_subset() -> None:
    text = 'a:\n  b: ["x", "y"]  # note\n  c:\n    - "1:2"\n    - z\n  d:\ne: \'q\'\n'
    assert read_yaml_subset(text) == {"a": {"b": ["x", "y"], "c": ["1:2", "z"], "d": None},
                                      "e": "q"}


# -- compose --------------------------------------------------------------------------


def test_services_and_redis_durability_and_auth(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", *STREAMEX_SERVICES, *MONITORING_SERVICES}
    r = services["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+", r["image"]), "pin the image's version"
    cmd = r["command"]
    assert cmd[:2] == ["sh", "-c"]
    script = cmd[2]
    assert "--appendonly yes" in script and "--appendfsync everysec" in script
    # The password comes from the secret, into a file on a tmpfs, never onto argv.
    assert "requirepass" in script and PASSWORD_SECRET in script
    assert "--requirepass" not in script
    assert "/run/redis" in r["tmpfs"] and script.count("/run/redis/auth.conf") >= 2
    assert r["secrets"] == ["redis_password"]
    assert "ports" not in r, "Redis must not be published on the host"
    volume, _, mount = r["volumes"][0].partition(":")
    assert mount == "/data" and volume in compose["volumes"], "AOF must live in a named volume"
    health = r["healthcheck"]["test"]
    assert health[0] == "CMD-SHELL" and "REDISCLI_AUTH" in health[1] and "ping" in health[1]


def test_secrets_are_files_that_are_not_committed(compose: dict[str, Any]) -> None:
    assert compose["secrets"] == {
        "redis_password": {"file": "./deploy/secrets/redis_password"},
        "streamex_accounts": {"file": "./deploy/secrets/accounts.toml"},
        "grafana_admin_password": {"file": "./deploy/secrets/grafana_admin_password"}}
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/secrets/" in ignored
    tracked = subprocess.run(["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert not [f for f in tracked if f.startswith("deploy/secrets/")]
    # The example holds no account (nothing to log on with until real ones are added).
    example = tomllib.loads((ROOT / "deploy" / "accounts.example.toml").read_text())
    assert example == {}


@pytest.mark.parametrize("name", STREAMEX_SERVICES)
def test_streamex_services(compose: dict[str, Any], name: str) -> None:
    s = compose["services"][name]
    assert s["build"] == "."
    assert re.fullmatch(r"streamex:\d+\.\d+\.\d+", s["image"]), "pin the image's version"
    assert s["command"] == [name, "--config", CONFIG_IN_CONTAINER]
    history = [HISTORY_VOLUME] if name in ("history", "api", "marketdata") else []
    assert s["volumes"] == [f"./deploy/streamex.toml:{CONFIG_IN_CONTAINER}:ro", *history]
    if history:
        assert HISTORY_VOLUME.partition(":")[0] in compose["volumes"]
    assert s["secrets"] == ["redis_password", "streamex_accounts"]
    assert s["depends_on"]["redis"]["condition"] == "service_healthy"
    test = s["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], f"{name} healthcheck", "exec")
    assert s["restart"] == "unless-stopped"


def test_the_mounted_config_names_the_secrets_and_holds_none() -> None:
    data = tomllib.loads((ROOT / "deploy" / "streamex.toml").read_text())
    assert "accounts" not in data, "accounts (with secrets) belong in the accounts secret"
    assert data["accounts_file"] == ACCOUNTS_SECRET
    assert data["redis"] == {"url": REDIS_URL, "password_file": PASSWORD_SECRET}


def test_ports_are_bound_to_loopback_and_match_the_mounted_config(
        compose: dict[str, Any], tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "streamex.toml").read_text()
    password = tmp_path / "redis_password"
    password.write_text("pw\n")
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\nid = "a"\napi_key = "k"\nsecret = "s"\n')
    local = tmp_path / "streamex.toml"
    local.write_text(text.replace(PASSWORD_SECRET, str(password))
                     .replace(ACCOUNTS_SECRET, str(accounts)))
    config = load_config(local)
    assert config.redis.url == "redis://:pw@redis:6379/0"  # the password, from its file
    assert [a.id for a in config.accounts] == ["a"]
    assert config.history.url == "sqlite:///" + HISTORY_VOLUME.partition(":")[2] + \
        "/history.sqlite3"
    for name, listener in (("gateway", config.gateway), ("marketdata", config.marketdata),
                           ("api", config.api)):
        assert listener.host == "0.0.0.0", f"{name} must listen on every interface in a container"
        assert compose["services"][name]["ports"] == [
            f"127.0.0.1:{listener.port}:{listener.port}"]
        assert f"http://127.0.0.1:{listener.port}/readyz" in compose["services"][name][
            "healthcheck"]["test"][3]
    assert [config.gateway.port, config.marketdata.port, config.api.port] == [8001, 8002, 8003]


def test_compose_tool_accepts_the_file_when_installed() -> None:
    """``config -q`` validates against the real Compose schema (where a tool is installed)."""
    tools = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        tools.append([docker, "compose"])
    if legacy := shutil.which("docker-compose"):
        tools.append([legacy])
    for tool in tools:
        done = subprocess.run([*tool, "config", "-q"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    # Without a tool, the structural checks above are the validation.
    assert (ROOT / "docker-compose.yml").stat().st_size > 0


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_builds_an_unprivileged_streamex_image() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert re.fullmatch(r"FROM python:3\.11\.\d+-slim-\w+", lines[0]), "pin the base image"
    assert any(line.startswith("RUN pip install .") for line in lines)
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert lines[[line.split()[0] for line in lines].index("ENTRYPOINT")] == \
        'ENTRYPOINT ["streamex"]'
    copied = {line.split()[1].rstrip("/") for line in lines if line.startswith("COPY ")}
    copied |= {w for line in lines if line.startswith("COPY ") for w in line.split()[1:-1]}
    with (ROOT / "pyproject.toml").open("rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    top_level = sorted({p.split(".")[0] for p in packages})
    missing = [p for p in [*top_level, "pyproject.toml", "README.md"] if p not in copied]
    assert not missing, f"not copied into the image: {missing}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


# -- the healthcheck one-liners, run for real -------------------------------------------


def _healthcheck(compose: dict[str, Any], name: str) -> str:
    code: str = compose["services"][name]["healthcheck"]["test"][3]
    return code


def _run(code: str) -> int:
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          timeout=20).returncode


@pytest.mark.parametrize("name", STREAMEX_SERVICES)
def test_readiness_healthcheck(compose: dict[str, Any], name: str) -> None:
    """Each service's healthcheck passes on a 200 from /readyz, fails on a 503 and on a
    closed port (run against the real endpoint server of ops.http)."""
    code = _healthcheck(compose, name)
    found = re.search(r"http://127\.0\.0\.1:(\d+)/readyz", code)
    assert found is not None, code
    port = found.group(1)
    health = Health(name)
    problem: list[str | None] = ["catching up"]
    health.add_check("caught_up", lambda: problem[0])
    server = MetricsServer(process_registry(), health, "127.0.0.1", 0).start()
    try:
        here = code.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{server.port}/")
        assert _run(here) != 0, "healthy while /readyz says 503"
        problem[0] = None
        assert _run(here) == 0, "not healthy while /readyz says 200"
    finally:
        server.close()
    closed = free_port()
    assert _run(code.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{closed}/")) != 0
