"""One wrapper for ``python -m streamex ...`` child processes in tests.

Output (stdout and stderr) goes to ``log_path``; :meth:`StreamexProcess.wait_listening`
waits for a service's ``event=listening`` line there. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TypeVar

from timing import TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent

P = TypeVar("P", bound="StreamexProcess")


class StreamexProcess:
    """``python -m streamex ARGS`` as a child process, started by :meth:`start`."""

    def __init__(self, args: Sequence[str], log_path: Path, *,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.args = [sys.executable, "-m", "streamex", *args]
        self.log_path = log_path
        self.timeout_s = timeout_s
        self._log_start = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self: P) -> P:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, cwd=REPO, stderr=self._log, stdout=self._log)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_listening(self, service: str, timeout_s: float | None = None) -> str:
        """The ``ws://`` URL of the service's ``event=listening`` line (this start's output);
        fails the test after the timeout or if the process exits first."""
        pattern = re.compile(rf"event=listening service={service} url=(ws://\S+)")
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            found = pattern.search(self.log()[self._log_start:])
            if found:
                return found.group(1)
            if not self.running():
                raise AssertionError(f"{service} exited before listening:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} did not listen in time:\n{self.log()}")
            time.sleep(0.02)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the exit (raises ``TimeoutExpired``); returns the exit code."""
        assert self.proc is not None
        code = self.proc.wait(self.timeout_s if timeout_s is None else timeout_s)
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would (a stopped process is continued first)."""
        if self.proc is None:
            return
        if self.running():
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.wait()

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code
        (None if never started)."""
        if self.proc is None:
            return None
        if self.running():
            self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
