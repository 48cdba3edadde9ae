"""Shared fixtures."""

from __future__ import annotations

import pytest

FACES = ["call", "acall", "astream"]


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return request.param
