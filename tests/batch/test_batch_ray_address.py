"""A batch sent to an existing Ray cluster by address (a head node started with `ray start`),
journaling to a shared PostgreSQL store — the multi-node set-up, on one machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from helpers import postgres_dsn

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from conftest import QUIET_OFFLINE  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_batch_on_a_cluster_by_address_with_a_postgres_journal() -> None:
    ray = pytest.importorskip("ray")
    from treadle.batch import batch
    from treadle.store.postgres import PostgresRunStore

    dsn = postgres_dsn("Ray + PostgreSQL batch")
    prefix = f"t_ray_{os.getpid()}_"
    store = PostgresRunStore(dsn, table_prefix=prefix)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, **QUIET_OFFLINE,
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)}
    temp = tempfile.mkdtemp(prefix="trh")
    port = _free_port()
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   env=env, check=True, capture_output=True, timeout=120)
    old = {k: os.environ.get(k) for k in (*QUIET_OFFLINE, "PYTHONPATH")}
    os.environ.update({k: env[k] for k in old})
    try:
        inputs = [f"a{i}" for i in range(40)]
        url = f"{dsn}{'&' if '?' in dsn else '?'}table_prefix={prefix}"
        res = batch("batch_agents:make_fast_runner", inputs, backend="ray", ray_address=f"127.0.0.1:{port}",
                    workers=2, store=url, batch_id="addr")
        local = batch("batch_agents:make_fast_runner", inputs, backend="local")
        assert res.done == 40 and res.failed == 0, res.summary()
        assert [r.answer for r in res] == [r.answer for r in local]
        assert {r.run_id: r.status for r in store.list_runs(limit=100)} == {f"addr-{i}": "success" for i in range(40)}
        assert not ray.is_initialized(), "a cluster given by address is left running, the connection closed"
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        with store._lock:
            conn: Any = store._connection()
            for table in ("events", "runs", "meta"):
                conn.execute(f"DROP TABLE IF EXISTS {prefix}{table}")
        store.close()
