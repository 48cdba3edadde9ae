"""The security tests reuse the fault-injecting server of tests/faults (imported, not copied)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

_FAULTS = str(Path(__file__).resolve().parent.parent / "faults")
if _FAULTS not in sys.path:
    sys.path.insert(0, _FAULTS)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """The recording fault server (tests/security/recording_server.py), one per test module."""
    from recording_server import RecordingServer

    s = RecordingServer().start()
    try:
        yield s
    finally:
        s.stop()
