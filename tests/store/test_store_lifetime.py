"""A store nobody holds any more is collected and its files closed: a program (or a server)
that makes a Runner with a journal per task does not run out of file descriptors."""

from __future__ import annotations

import gc
import os
import sys
import weakref
from pathlib import Path

import pytest

from treadle import Agent, Runner, ScriptedModel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_run(db: Path) -> weakref.ref[object]:
    runner = Runner(Agent(model=ScriptedModel(["hi"])), store=f"sqlite:///{db}")
    assert runner.call("x").answer == "hi"
    assert runner.store is not None
    return weakref.ref(runner.store)


async def one_async_run(db: Path) -> weakref.ref[object]:
    runner = Runner(Agent(model=ScriptedModel(["hi"])), store=f"sqlite:///{db}")
    assert (await runner.acall("x")).answer == "hi"
    assert runner.store is not None
    return weakref.ref(runner.store)


def test_a_dropped_runners_store_is_collected_and_its_files_closed(tmp_path: Path) -> None:
    one_run(tmp_path / "warm.db")  # the first run imports and starts what stays for the process
    gc.collect()
    before = open_fds()
    stores = [one_run(tmp_path / f"r{i}.db") for i in range(30)]
    gc.collect()
    assert [s for s in stores if s() is not None] == []
    assert open_fds() - before < 10  # 3 files a store (db, -wal, -shm) were kept open: 90


async def test_the_same_from_async_runs(tmp_path: Path) -> None:
    await one_async_run(tmp_path / "warm.db")
    gc.collect()
    before = open_fds()
    stores = [await one_async_run(tmp_path / f"a{i}.db") for i in range(30)]
    gc.collect()
    assert [s for s in stores if s() is not None] == []
    assert open_fds() - before < 10
