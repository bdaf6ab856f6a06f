"""The chaos tier (issue 19): real daemons in network namespaces under a seeded nemesis. It reuses
the namespace lab of tests/daemons (netns.py), put on sys.path here."""

from __future__ import annotations

import sys
from pathlib import Path

_DAEMONS = str(Path(__file__).resolve().parent.parent / "daemons")
if _DAEMONS not in sys.path:
    sys.path.insert(0, _DAEMONS)
