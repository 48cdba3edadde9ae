"""The security tests reuse the fault-injecting server of tests/faults (imported, not copied)."""

from __future__ import annotations

import sys
from pathlib import Path

_FAULTS = str(Path(__file__).resolve().parent.parent / "faults")
if _FAULTS not in sys.path:
    sys.path.insert(0, _FAULTS)
