"""What the service commands (``gateway``, ``marketdata``) share: arguments and the ready line.

Each service logs one ``event=listening url=ws://HOST:PORT/`` line once it
accepts connections (with ``--port 0``, the port picked): wait for it to
know the service is ready.
"""

from __future__ import annotations

import argparse
import logging

from streamex.logs import add_log_level


def add_service_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """``--config``, ``--redis-url``, ``--host``, ``--port``, ``--log-level``."""
    parser.add_argument("--config", help="TOML configuration file (default: built-in markets)")
    parser.add_argument("--redis-url", help="Redis to use (default: the config's [redis] url)")
    parser.add_argument("--host", help=f"address to listen on (default: [{section}] host)")
    parser.add_argument("--port", type=int,
                        help=f"port to listen on, 0 for any free one (default: [{section}] port)")
    add_log_level(parser)


def log_listening(service: str, host: str, port: int) -> None:
    """The ready line: ``event=listening service=gateway url=ws://127.0.0.1:8001/``."""
    logging.getLogger(f"streamex.{service}").info(
        "event=listening service=%s url=ws://%s:%d/", service, host, port)
