"""One logging setup for every streamex process: logfmt lines on stderr.

Every line is ``ts=... level=... logger=... <message>``. A message written as
``key=value`` pairs (``event=recovered market=BTC-USD ...``) is kept as it
is; any other message becomes ``msg="..."`` (quoted, one line), so the
output of every process can be read by one parser (and by people). Every
service command takes ``--log-level`` (:func:`add_log_level`) and calls
:func:`setup_logging` once at start.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

LOG_LEVELS = ("debug", "info", "warning", "error")

_LOGFMT = re.compile(r"^[a-z_][a-z0-9_]*=\S")


def quote_value(text: str) -> str:
    """A logfmt value: bare when safe, else double-quoted with escapes, on one line."""
    if text and not any(c in text for c in ' "=\\\n\r\t'):
        return text
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """``ts=2026-12-01T20:03:45.123 level=info logger=streamex.engine event=... k=v``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        message = record.getMessage()
        body = message if _LOGFMT.match(message) else f"msg={quote_value(message)}"
        line = (f"ts={ts}.{int(record.msecs):03d} level={record.levelname.lower()} "
                f"logger={record.name} {body}")
        if record.exc_info:
            line += " traceback=" + quote_value(self.formatException(record.exc_info))
        return line


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                        type=str.lower, help="(default: %(default)s)")


def setup_logging(level: str = "info") -> None:
    """Logfmt lines on stderr for the whole process, at ``level``.

    The websockets library logs each connection at INFO: it is kept at WARNING.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))
