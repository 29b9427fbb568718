"""The compiled matching core (setup.py, matching/__init__.py): built where it can be,
never stale, and the pure module installed and used where it cannot.

The book's behaviour is tested by the book's own tests, which run against the
compiled module and once more with ``STREAMEX_PURE=1`` (``make test``).
"""

from __future__ import annotations

import importlib.machinery
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import matching
from matching import book

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import matching, matching.book as b; "
         "print(matching.COMPILED, b.__file__, getattr(b, 'EDITED', False))")


def _can_compile() -> bool:
    """A C compiler and Python's headers: what building the extension needs."""
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")[:1]
    include = sysconfig.get_paths()["include"]
    return bool(cc) and shutil.which(cc[0]) is not None and \
        (Path(include) / "Python.h").exists()


def _extension_built() -> bool:
    """Whether the install left a compiled ``matching.book`` beside ``book.py``."""
    here = Path(book.__file__).parent
    return any((here / f"book{suffix}").exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _probe(path: Path, **env: str) -> tuple[list[str], str]:
    """Import the matching core found under ``path`` in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if k != "STREAMEX_PURE"}
    environment.update(env, PYTHONPATH=str(path))
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=path, env=environment,
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.split(), proc.stderr


def _copy_core(dest: Path) -> None:
    for package in ("contract", "matching"):
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))


def test_this_install_runs_the_compiled_core_where_it_could_be_built() -> None:
    """So the suite tests what users run: compiled wherever a compiler is, else pure."""
    if os.environ.get("STREAMEX_PURE") == "1":
        assert not matching.COMPILED and book.__file__.endswith("book.py")
    elif _can_compile():
        assert matching.COMPILED, (
            "a C compiler is here but matching.book is not compiled: "
            "reinstall (`make dev`, or `pip install -e .`) to build it")
        assert (Path(book.__file__).parent / "book.sha256").exists()
    else:
        assert not matching.COMPILED


def test_streamex_pure_loads_book_py_even_beside_an_extension(tmp_path: Path) -> None:
    _copy_core(tmp_path)
    (compiled, path, _), stderr = _probe(tmp_path, STREAMEX_PURE="1")
    assert (compiled, path) == ("False", str(tmp_path / "matching" / "book.py"))
    assert stderr == ""


def test_an_edited_book_py_is_never_shadowed_by_its_stale_extension(tmp_path: Path) -> None:
    if not _extension_built():
        pytest.skip("this install has no compiled core to go stale (built without a compiler)")
    _copy_core(tmp_path)
    (compiled, path, edited), stderr = _probe(tmp_path)
    assert (compiled, edited) == ("True", "False") and path.endswith(".so")
    assert stderr == ""
    source = tmp_path / "matching" / "book.py"
    source.write_text(source.read_text() + "\nEDITED = True\n")
    (compiled, path, edited), stderr = _probe(tmp_path)
    assert (compiled, path, edited) == ("False", str(source), "True")
    assert "book.py changed since it was compiled" in stderr
    # An extension without its recorded digest is not trusted either.
    (tmp_path / "matching" / "book.sha256").unlink()
    (compiled, _, edited), stderr = _probe(tmp_path)
    assert (compiled, edited) == ("False", "True") and "book.sha256 is missing" in stderr


def test_pip_builds_a_working_pure_wheel_where_nothing_can_compile(tmp_path: Path) -> None:
    """No C compiler (``CC`` that fails): ``pip`` still installs, with the pure core."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
        "tests", "*.so", "*.sha256", "deploy", "docs"))
    env = {k: v for k, v in os.environ.items() if k != "STREAMEX_PURE"}
    env.update(CC="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(tree)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the C build failed" in proc.stdout + proc.stderr
    [wheel] = (tmp_path / "dist").glob("streamex-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "matching/book.py" in names and "matching/__init__.py" in names
    assert not [n for n in names if n.startswith("matching/") and n.endswith(".so")]
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    (compiled, path, _), stderr = _probe(target)
    assert (compiled, path, stderr) == ("False", str(target / "matching" / "book.py"), "")
