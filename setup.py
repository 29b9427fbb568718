"""Build step: the matching core compiled with mypyc where it can be, else pure Python.

``pip install`` runs this (the project's metadata is in ``pyproject.toml``).
``matching/book.py`` becomes a C extension when mypyc (a build requirement)
and a C compiler are present; if either is missing, the build fails, or
``STREAMEX_PURE=1`` is set, the pure module is installed alone, which
behaves the same, only slower. Next to a built extension goes
``book.sha256``, the digest of the source it was compiled from:
``matching/__init__.py`` loads ``book.py`` itself when the two differ, so an
edited ``book.py`` is never shadowed by a stale extension.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
COMPILED = ["matching/book.py"]
"""The modules compiled; each gets a ``<name>.sha256`` next to its extension."""


def _warn(message: str) -> None:
    print(f"streamex: {message}; installing the pure-Python matching core", file=sys.stderr)


def _extensions() -> list[Extension]:
    """mypyc's extensions for :data:`COMPILED`, or none (pure) when it cannot build them."""
    if os.environ.get("STREAMEX_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return []
    cwd = os.getcwd()
    os.chdir(HERE)  # mypyc reads [tool.mypy] and writes build/ relative to the tree
    try:
        return list(mypycify(COMPILED, opt_level="3", debug_level="0"))
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        _warn(f"mypyc could not translate the core ({exc!r})")
        return []
    finally:
        os.chdir(cwd)


class OptionalBuildExt(build_ext):
    """``build_ext`` that installs the pure module when compiling fails (no compiler,
    no Python headers) and records each extension's source digest beside it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # setuptools' compiler errors have no common base
            _warn(f"the C build failed ({exc!r})")
            self.extensions = []
            return
        for source in COMPILED:
            extension, digest_file = self._built(source)
            if extension.exists():
                digest = hashlib.sha256((HERE / source).read_bytes()).hexdigest()
                digest_file.write_text(digest + "\n")

    def get_outputs(self) -> list[str]:
        outputs: list[str] = super().get_outputs()
        digests = [self._built(source)[1] for source in COMPILED]
        return outputs + [str(p) for p in digests if p.exists()]

    def _built(self, source: str) -> tuple[Path, Path]:
        """Where ``source``'s extension goes, and its digest file beside it."""
        extension = Path(self.get_ext_fullpath(source.removesuffix(".py").replace("/", ".")))
        return extension, extension.with_name(Path(source).stem + ".sha256")

options: dict[str, Any] = {"cmdclass": {"build_ext": OptionalBuildExt}}
setup(ext_modules=_extensions(), **options)
