"""``streamex bench KIND``: dispatch to one benchmark module per kind.

Each benchmark module provides ``add_arguments(parser)`` and ``run(args)``;
only the selected one is imported.
"""

from __future__ import annotations

import argparse
import importlib
from typing import cast

BENCHMARKS = {
    "core": ("streamex.bench_core", "matching core throughput on a realistic flow"),
    "engine": ("streamex.bench_engine", "engine on Redis Streams vs the XREADGROUP+XACK floor"),
    "feed": ("streamex.bench_feed", "market-data commit-to-subscriber latency"),
    "e2e": ("streamex.bench_e2e", "end-to-end order latency under open-loop load"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="KIND", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(missing=module)
            continue
        mod.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    missing = getattr(args, "missing", None)
    if missing:
        print(f"streamex bench {args.bench}: not available in this build ({missing})")
        return 2
    module = importlib.import_module(BENCHMARKS[args.bench][0])
    return cast(int, module.run(args))
