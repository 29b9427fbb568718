"""The ``streamex`` command line.

Each subcommand is one entry of :data:`COMMANDS`: a help line and two
callables, ``add_arguments(parser)`` and ``run(args) -> exit code``. Most live
in their own module and are registered with :func:`lazy`, which imports the
module only when that subcommand is used, so ``streamex redis`` never pays for
importing the gateway. To add a subcommand, write a module with
``add_arguments`` and ``run`` and add one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

from streamex import __version__


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def lazy(module: str, help: str) -> Command:
    """A subcommand whose ``add_arguments`` and ``run`` are those of ``module``."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module).add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return cast(int, importlib.import_module(module).run(args))

    return Command(help, add_arguments, run)


def _config_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="TOML configuration file")


def _config_check_run(args: argparse.Namespace) -> int:
    from streamex.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"streamex config-check: {exc}", file=sys.stderr)
        return 1
    symbols = ", ".join(m.symbol for m in config.markets)
    redis = config.redis.url or "embedded"
    print(
        f"{args.file}: ok: {len(config.markets)} markets ({symbols}), "
        f"{len(config.accounts)} accounts, redis {redis}, "
        f"gateway {config.gateway.host}:{config.gateway.port}, "
        f"marketdata {config.marketdata.host}:{config.marketdata.port}"
    )
    return 0


COMMANDS: dict[str, Command] = {
    "redis": lazy("streamex.redis_cmd", "run an embedded Redis server in the foreground"),
    "up": lazy("streamex.up", "run the whole exchange: Redis, engines, gateway, market data"),
    "engine": lazy("streamex.engine_cmd", "run the matching engine for some markets"),
    "risk": lazy("streamex.risk_cmd", "run the risk engine (balances, holds, fees) for "
                                      "some account shards"),
    "admin": lazy("streamex.admin_cmd", "deposit, withdraw, balances (operator commands)"),
    "gateway": lazy("streamex.gateway_cmd", "run the order-entry websocket gateway"),
    "marketdata": lazy("streamex.marketdata_cmd", "run the market-data websocket service"),
    "history": lazy("streamex.history_cmd", "copy every market's and risk shard's events into "
                                            "the history database (SQLite or PostgreSQL)"),
    "api": lazy("streamex.api_cmd", "run the Binance-compatible REST API"),
    "status": lazy("streamex.status_cmd", "show engines, lag, streams and running services "
                                          "(from Redis)"),
    "bench": lazy("streamex.bench_cmd",
                  "run a benchmark (core, engine, risk, feed, e2e, history, api)"),
    "demo": lazy("streamex.demo", "run a small seeded market maker so the book is live"),
    "config-check": Command(
        "check a configuration file and summarize it", _config_check_arguments, _config_check_run
    ),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``selected``'s arguments are added (and its module imported)."""
    parser = argparse.ArgumentParser(
        prog="streamex", description="An in-memory exchange on Redis Streams."
    )
    parser.add_argument("--version", action="version", version=f"streamex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=command.help, description=command.help)
        if name == selected:
            command.add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand and return its exit code (the console script exits with it)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # There are no top-level options taking values, so the first word is the command.
    selected = next((a for a in arguments if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(arguments)
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
