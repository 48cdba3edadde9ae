"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest

# the embedded model's disk cache of evaluated prompt prefixes: one fresh folder per test session
# (inherited by the CLI subprocesses), never the user's ~/.cache
os.environ.setdefault("TREADLE_LOCAL_CACHE", tempfile.mkdtemp(prefix="treadle-test-prefix-"))

FACES = ["call", "acall", "astream"]


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return request.param
