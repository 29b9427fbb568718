"""The matching core: order book, price-time matching, snapshots; pure and deterministic.

Runs inside the market engine process (``engine``) and in tests and
benchmarks. No I/O once imported: it imports only ``contract``, msgspec and
sortedcontainers (and reads two files at import, below).

``matching.book`` is compiled with mypyc when the install could (``setup.py``):
importing this package picks the extension only if it was built from the
``book.py`` beside it (the ``book.sha256`` the build wrote), else loads
``book.py`` and says why on stderr; ``STREAMEX_PURE=1`` always loads
``book.py``. :data:`COMPILED` says which one runs. Costs one SHA-256 of
``book.py`` (~0.1 ms) per process.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _stale_reason() -> str | None:
    """Why the compiled ``matching.book`` must not be used; None: it may (or none exists)."""
    spec = importlib.util.find_spec("matching.book")
    if spec is None or spec.origin is None or spec.origin.endswith(".py"):
        return None
    if os.environ.get("STREAMEX_PURE") == "1":
        return ""  # asked for, nothing to say
    recorded = Path(spec.origin).with_name("book.sha256")
    try:
        built_from = recorded.read_text().strip()
    except OSError:
        return f"{recorded} is missing"
    if hashlib.sha256((_HERE / "book.py").read_bytes()).hexdigest() != built_from:
        return "matching/book.py changed since it was compiled (reinstall to recompile)"
    return None


def _load_source() -> None:
    """Import ``book.py`` as ``matching.book``, ahead of an extension of that name."""
    path = str(_HERE / "book.py")
    loader = importlib.machinery.SourceFileLoader("matching.book", path)
    spec = importlib.util.spec_from_file_location("matching.book", path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["matching.book"] = module
    loader.exec_module(module)


if "matching.book" not in sys.modules:
    _reason = _stale_reason()
    if _reason is not None:
        if _reason:
            print(f"streamex: using the pure-Python matching core: {_reason}", file=sys.stderr)
        _load_source()

from matching import book as _book  # noqa: E402  (after the choice above)

COMPILED: bool = not (_book.__file__ or "").endswith(".py")
"""True when the mypyc extension of ``matching.book`` runs, False for ``book.py``."""
