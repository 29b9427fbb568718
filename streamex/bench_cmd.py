"""``streamex bench KIND``: run one benchmark of the ``benchmarks`` package.

The benchmarks and load generators are not part of the exchange: they live
in ``benchmarks/`` and need the ``bench`` extra (picows, matplotlib). Each
benchmark module provides ``add_arguments(parser)`` and ``run(args)``; only
the selected one is imported. Without the extra, the command says which
command installs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import cast

BENCHMARKS = {
    "core": ("benchmarks.core_bench", "matching core throughput on a realistic flow"),
    "peers": ("benchmarks.peers_bench",
              "matching core vs pure-Python order books (lightmatchingengine, pyorderbook)"),
    "engine": ("benchmarks.engine_bench", "engine on Redis Streams vs the XREADGROUP+XACK floor"),
    "risk": ("benchmarks.risk_bench", "risk engine on Redis Streams vs the XREADGROUP+XACK floor"),
    "feed": ("benchmarks.feed_bench", "market-data commit-to-subscriber latency"),
    "e2e": ("benchmarks.e2e", "end-to-end order latency under open-loop load"),
    "history": ("benchmarks.history_bench", "history ingest rate on SQLite and PostgreSQL"),
    "api": ("benchmarks.api_bench", "REST depth and order latency vs an aiohttp echo floor"),
}

INSTALL_HINT = "pip install -e '.[bench]'"
"""The command that installs the benchmarks' dependencies in a clone (run it in the venv)."""

# What the bench extra provides: a benchmark that cannot import one of these is not installed.
_EXTRA_MODULES = frozenset({"benchmarks", "picows", "matplotlib"})


def _missing_extra(exc: ModuleNotFoundError) -> bool:
    return (exc.name or "").split(".")[0] in _EXTRA_MODULES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="KIND", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _missing_extra(exc):
                raise
            # Accept any arguments so that the message below is what the user sees: with no
            # option prefix, "--rate" is not an (unknown) option but one more word of ``rest``.
            p = sub.add_parser(name, help=help_text, description=help_text, prefix_chars="+",
                               add_help=False)
            p.set_defaults(missing=exc.name)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        mod.add_arguments(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    missing = getattr(args, "missing", None)
    if missing:
        print(f"streamex bench {args.bench}: the benchmarks are not installed ({missing} is "
              f"missing); install them with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[args.bench][0])
    return cast(int, module.run(args))
