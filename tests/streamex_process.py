"""One wrapper for ``python -m streamex ...`` child processes in tests.

Output goes to ``log_path`` (stdout and stderr), or with ``pipe_stdout`` only
stderr does and :meth:`StreamexProcess.read_line` reads stdout (a service's
"listening on ..." line). Every wait is bounded.
"""

from __future__ import annotations

import os
import select
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

    def __init__(self, args: Sequence[str], log_path: Path, *, pipe_stdout: bool = False,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.args = [sys.executable, "-m", "streamex", *args]
        self.log_path = log_path
        self.pipe_stdout = pipe_stdout
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self: P) -> P:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, cwd=REPO, stderr=self._log,
            stdout=subprocess.PIPE if self.pipe_stdout else self._log)
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

    def read_line(self, timeout_s: float | None = None) -> str:
        """The next stdout line (``pipe_stdout``); fails the test after the timeout or at exit."""
        assert self.proc is not None and self.proc.stdout is not None
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no output from {self.args[3]} in {timeout_s} s:\n"
                                     + self.log())
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1)
                if not chunk:
                    raise AssertionError(f"{self.args[3]} exited:\n{self.log()}")
                data += chunk
        return data.decode()

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
