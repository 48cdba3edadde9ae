"""Fixtures: ``backend`` (each test once on SQLite and once on PostgreSQL) and ``pg_backend``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backends import Backend, make_backend


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request.param, tmp_path)


@pytest.fixture
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend("postgres", tmp_path)
