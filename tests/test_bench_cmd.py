"""``streamex bench KIND`` without the ``bench`` extra: the install command, exit code 2.

A fresh interpreter is made to lack picows (``sys.modules["picows"] = None``
makes its import fail as an uninstalled module's does), so the message path
is tested in the test suite's own venv, which has the extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamex.bench_cmd import INSTALL_HINT, _missing_extra

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_PICOWS = """
import sys
sys.modules["picows"] = None
from streamex.cli import main
sys.exit(main(["bench", *sys.argv[1:]]))
"""


def _bench_without_picows(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_PICOWS, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_install_command_is_the_editable_bench_extra() -> None:
    assert INSTALL_HINT == "pip install -e '.[bench]'"


@pytest.mark.parametrize("args", [
    ("e2e", "--rate", "10"),
    ("e2e",),
    ("e2e", "--help"),
    ("e2e", "--rate", "10", "--duration", "2", "--json"),
    ("feed", "--duration", "1"),
])
def test_a_benchmark_of_the_extra_says_how_to_install_it(args: tuple[str, ...]) -> None:
    done = _bench_without_picows(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == (f"streamex bench {args[0]}: the benchmarks are not installed "
                           f"(picows is missing); install them with: {INSTALL_HINT}\n")


def test_the_other_benchmarks_still_run_without_the_extra() -> None:
    done = _bench_without_picows("core", "--messages", "2000", "--runs", "1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"msgs_per_s"' in done.stdout.splitlines()[-1]


def test_only_the_extras_modules_count_as_not_installed() -> None:
    assert _missing_extra(ModuleNotFoundError("No module named 'picows'", name="picows"))
    assert _missing_extra(ModuleNotFoundError(name="matplotlib.pyplot"))
    assert not _missing_extra(ModuleNotFoundError(name="msgspec"))
    assert not _missing_extra(ModuleNotFoundError(name=None))
