"""Credentials given as model_kwargs (headers, keys) are not journaled; a resumed run gets
them from its agent again."""

from __future__ import annotations

from pathlib import Path

from treadle import Agent, Function, Runner, ScriptedModel, tool
from treadle._journal import REDACTED, redact_secrets
from treadle.store import SQLiteRunStore

MARKER = "SECRETMARKER"


@tool(require_approval=True)
def wipe(path: str) -> str:
    """Wipe a file.

    Args:
        path: the file
    """
    return f"wiped {path}"


def test_redaction_names() -> None:
    kw = {"max_tokens": 5, "max_completion_tokens": 9, "temperature": 0.1, "api_key": "k1", "token": "t",
          "extra_headers": {"Authorization": "Bearer x", "x-api-key": "k2", "X-Trace": "keep", "Cookie": "c"},
          "auth_token": "t2", "client_secret": "s", "password": "p", "stop": ["token"], "empty_api_key": ""}
    out = redact_secrets(kw)
    assert out["max_tokens"] == 5 and out["max_completion_tokens"] == 9 and out["temperature"] == 0.1
    assert out["stop"] == ["token"] and out["extra_headers"]["X-Trace"] == "keep" and out["empty_api_key"] == ""
    for key in ("api_key", "token", "auth_token", "client_secret", "password"):
        assert out[key] == REDACTED, key
    for key in ("Authorization", "x-api-key", "Cookie"):
        assert out["extra_headers"][key] == REDACTED, key


def test_credentials_are_not_journaled_and_come_back_on_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    script = [Function(name="wipe", kwargs={"path": "a.txt"}), Function(name="finish", kwargs={"answer": "done"})]
    model = ScriptedModel(script, per_run=True)
    agent = Agent(tools=[wipe], model=model, model_kwargs={
        "max_tokens": 5, "extra_headers": {"Authorization": f"Bearer sk-{MARKER}-agent", "X-Trace": "t1"}})
    runner = Runner(agent, store=f"sqlite:///{db}", suspend_for_approval=True)
    per_call = {"extra_headers": {"Authorization": f"Bearer sk-{MARKER}-agent", "X-Api-Key": f"{MARKER}-call",
                                  "X-Trace": "t2"}, "api_key": f"{MARKER}-call"}
    result = runner.call("wipe a.txt", model_kwargs=per_call)
    assert result.status == "waiting_for_approval"
    sent = model.requests[-1].model_kwargs
    assert sent["api_key"] == f"{MARKER}-call" and sent["extra_headers"]["X-Api-Key"] == f"{MARKER}-call"
    store = SQLiteRunStore(db)
    stored = store.get_run(result.run_id).model_kwargs
    assert stored["extra_headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED, "X-Trace": "t2"}
    assert stored["api_key"] == REDACTED and stored["max_tokens"] == 5
    assert MARKER.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("runs.db*"))

    runner.record_decision(result.run_id, store_call_id(store, result.run_id), approve=True)
    resumed = runner.resume(result.run_id)
    assert resumed.status == "success" and resumed.answer == "done"
    sent = model.requests[-1].model_kwargs
    # the agent's own header is back, the call's own key is not (it was never journaled), the rest kept
    assert sent["extra_headers"] == {"Authorization": f"Bearer sk-{MARKER}-agent", "X-Trace": "t2"}
    assert "api_key" not in sent and sent["max_tokens"] == 5
    assert MARKER.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("runs.db*"))


def store_call_id(store: SQLiteRunStore, run_id: str) -> str:
    entries = store.events(run_id)
    return next(e.payload["item"]["id"] for e in entries if e.name == "agent.tool_permission_request")
