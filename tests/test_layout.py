"""The package layout is the architecture: which package may import what, checked mechanically.

From ARCHITECTURE.md ("Layout"): the contract and the pure matching core do
no I/O; each process's driver imports the contract and its own plumbing,
never another process's driver; the CLI (``streamex``) sits on top and
nothing below imports it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FIRST_PARTY = {"contract", "matching", "ledger", "candles", "engine", "risk", "redisio", "store",
               "gateway", "marketdata", "history", "api", "ops", "streamex", "benchmarks"}
IO_MODULES = {"asyncio", "socket", "ssl", "selectors", "subprocess", "http", "urllib", "redis",
              "hiredis", "websockets", "picows", "uvloop", "sqlite3", "psycopg", "aiohttp"}

# package -> (first-party packages it may import, third-party distributions it may import)
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "contract": ({"contract"}, {"msgspec"}),
    "matching": ({"contract", "matching"}, {"msgspec", "sortedcontainers"}),
    "ledger": ({"contract", "ledger"}, {"msgspec"}),
    "candles": ({"candles"}, {"msgspec"}),
    "engine": ({"contract", "matching", "engine", "ops"},
               {"msgspec", "redis", "hiredis", "prometheus_client"}),
    "risk": ({"contract", "ledger", "engine", "risk", "ops"},
             {"msgspec", "redis", "hiredis", "prometheus_client"}),
    "redisio": ({"redisio"}, {"redis", "hiredis"}),
    # The history database: schema, migrations, connections and queries (SQLite, PostgreSQL).
    "store": ({"contract", "candles", "store"}, {"msgspec", "psycopg"}),
    "gateway": ({"contract", "redisio", "gateway", "ops"},
                {"msgspec", "redis", "hiredis", "websockets", "prometheus_client"}),
    "marketdata": ({"contract", "candles", "redisio", "store", "marketdata", "ops"},
                   {"msgspec", "redis", "hiredis", "websockets", "sortedcontainers",
                    "prometheus_client"}),
    "history": ({"contract", "candles", "redisio", "store", "engine", "history", "ops"},
                {"msgspec", "redis", "hiredis", "prometheus_client"}),
    # The REST service composes the order entry of the gateway, the live book of market
    # data and the history database's queries: one implementation of each.
    "api": ({"contract", "candles", "redisio", "store", "gateway", "marketdata", "api", "ops"},
            {"msgspec", "redis", "hiredis", "aiohttp", "prometheus_client"}),
    # Metrics, health endpoints and service registration, for every service.
    "ops": ({"contract", "ops"}, {"msgspec", "redis", "hiredis", "websockets",
                                  "prometheus_client"}),
}
NO_IO = {"contract", "matching", "ledger", "candles"}


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_allows(package: str) -> None:
    first_party, third_party = ALLOWED[package]
    stdlib = set(sys.stdlib_module_names)
    found: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path) - {"__future__"}:
            if name in FIRST_PARTY:
                ok = name in first_party
            elif name in stdlib:
                ok = not (package in NO_IO and name in IO_MODULES)
            else:
                ok = name in third_party
            if not ok:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not found, "\n".join(found)


def test_nothing_below_the_cli_imports_it() -> None:
    offenders = [str(p.relative_to(ROOT)) for package in ALLOWED
                 for p in (ROOT / package).rglob("*.py") if "streamex" in _imports(p)]
    assert not offenders


def test_pure_core_and_contract_load_no_io_library() -> None:
    """In a fresh interpreter, importing every module of both loads no I/O library."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in NO_IO for p in (ROOT / package).rglob("*.py"))
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert {"contract", "matching"} <= loaded
    assert not loaded & {"redis", "asyncio", "websockets", "picows", "hiredis", "uvloop"}
