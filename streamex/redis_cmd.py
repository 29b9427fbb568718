"""``streamex redis``: an embedded Redis server in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import types

from streamex.redis_server import RedisServer, RedisServerError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (default: a free one, printed at start)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")
    parser.add_argument("--dir", default=None,
                        help="data directory (default: a temporary one, removed at exit)")
    parser.add_argument("--aof", action="store_true", help="append-only file persistence")
    parser.add_argument("--appendfsync", choices=("always", "everysec", "no"), default="everysec",
                        help="AOF fsync policy with --aof (default: %(default)s)")


def _exit_on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    server = RedisServer(port=args.port, host=args.host, data_dir=args.dir, aof=args.aof,
                         appendfsync=args.appendfsync)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.start()
    except RedisServerError as exc:
        print(f"streamex redis: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{server.url}  (pid {server.pid}, dir {server.data_dir}); Ctrl-C stops it",
              flush=True)
        code = server.wait()
        print(f"streamex redis: server exited with code {code}; log: {server.log_path}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
