"""Through `treadle serve`: a provider key echoed back by the provider reaches neither the
SSE stream, nor the run's JSON, the runs list, the trace, nor the journal; an endpoint that
refuses a request never shows the token it was given."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from recording_server import RecordingServer

from treadle import Agent
from treadle.models._retry import RetryPolicy
from treadle.models.openai import OpenAIModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_utils import serving

KEY = "sk-test-SECRETMARKER123"
MARKER = "SECRETMARKER"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.parametrize(("schedule", "status"), [(["401"], "error"), (["500key"], "success")])
def test_a_provider_key_never_reaches_the_http_api(server: RecordingServer, tmp_path: Path, schedule: list[str],
                                                    status: str) -> None:
    from treadle.server import create_app

    server.reset(*schedule)
    model = OpenAIModel("fault-model", base_url=server.base_url, api_key=KEY, timeout=2,
                        retry_policy=RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02))
    db = tmp_path / "runs.db"
    app = create_app(Agent(name="a", tools=[add], model=model), store=f"sqlite:///{db}", token="server-tok-77")
    auth = {"Authorization": "Bearer server-tok-77"}
    with serving(app) as url, httpx.Client(base_url=url, headers=auth, timeout=20) as c:
        run_id = c.post("/runs", json={"input": "What is 2 + 3?"}).json()["run_id"]
        stream = c.get(f"/runs/{run_id}/events").text  # the whole stream, to its end
        assert "agent.execution_complete" in stream
        body = c.get(f"/runs/{run_id}")
        assert body.json()["status"] == status, body.json()["error"]
        texts = {"the event stream": stream, "the run": body.text, "the runs list": c.get("/runs").text,
                 "the trace": c.get(f"/runs/{run_id}/trace").text}
        refused = httpx.get(f"{url}/runs", headers={"Authorization": "Bearer server-tok-7"})
        assert refused.status_code == 401 and "server-tok" not in refused.text
    assert server.requests and all(KEY in str(headers) for headers, _ in server.requests), \
        "the key was not sent: this test would prove nothing"
    if schedule == ["401"]:
        assert "[REDACTED]" in texts["the run"]  # the provider did echo it
    texts["the journal"] = b"".join(p.read_bytes() for p in db.parent.glob("runs.db*")).decode("latin-1")
    for where, text in texts.items():
        assert MARKER not in text, f"the provider key leaked into {where}"
