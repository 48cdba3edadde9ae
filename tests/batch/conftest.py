"""Fixtures for the Ray batch tests: a quiet, offline local cluster with 2 CPUs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).parent

QUIET_OFFLINE = {
    "RAY_AUTH_MODE": "disabled",  # a throwaway local cluster: no token written to ~/.ray
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report, no network
}


@pytest.fixture(scope="module")
def ray_env() -> Iterator[str]:
    """Env for a quiet, offline Ray whose workers can import batch_agents; yields a short temp dir."""
    mp = pytest.MonkeyPatch()
    for k, v in QUIET_OFFLINE.items():
        mp.setenv(k, v)
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p))
    tmp = tempfile.mkdtemp(prefix="tray")  # short: Ray's unix sockets live under it
    try:
        yield tmp
    finally:
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(ray_env: str) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning",
             _temp_dir=ray_env)
    try:
        yield
    finally:
        ray.shutdown()
