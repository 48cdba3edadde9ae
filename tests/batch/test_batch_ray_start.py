"""A Ray batch that starts its own local cluster shuts it down at the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from treadle.batch import batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from batch_agents import STEPS  # noqa: E402


def test_batch_starts_and_shuts_down_its_own_ray(ray_env: str) -> None:
    assert not ray.is_initialized()
    res = batch("batch_agents:make_fast_runner", ["a", "b", "c"], backend="ray", workers=1, concurrency=2,
                ray_init_kwargs={"_temp_dir": ray_env})
    want = [f"{t}|" + "+".join(f"{t.upper()}{i}" for i in range(STEPS)) for t in "abc"]
    assert [r.answer for r in res] == want and res.startup > 0
    assert not ray.is_initialized()
