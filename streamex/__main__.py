"""``python -m streamex``: the same as the ``streamex`` console script."""

from __future__ import annotations

import sys

from streamex.cli import main

sys.exit(main())
