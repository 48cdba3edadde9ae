"""Approval bypasses not covered by tests/test_approvals.py and tests/store/test_journal.py.

Already covered there (not repeated): cased / padded / zero-width / prefixed names in the
stream, stream edits failing validation, decisions for another run id or call id through
``PermissionManager``, replayed decisions, parallel calls decided one by one in the stream,
an approver mutating the request, blocked tools in "yolo" mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from treadle import (
    Agent,
    ApprovalOutcome,
    ApprovalResponse,
    Function,
    FunctionTool,
    PermissionManager,
    Runner,
    ScriptedModel,
)
from treadle._edits import InvalidEdit
from treadle._journal import record_decision
from treadle.errors import UserError
from treadle.store.sqlite import SQLiteRunStore

ran: list[tuple[str, Any]] = []


def delete(path: str) -> str:
    """Delete a file."""
    ran.append(("delete", path))
    return f"deleted {path}"


def pay(to: str, amount: int) -> str:
    """Pay someone."""
    ran.append(("pay", (to, amount)))
    return f"paid {amount} to {to}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


def gated() -> list[FunctionTool]:
    return [FunctionTool(delete, require_approval=True), FunctionTool(pay, require_approval=True)]


class Recorder:
    """An approval callback that records what it was asked and answers with ``answer``."""

    def __init__(self, answer: Any = False) -> None:
        self.asked: list[str] = []
        self.answer = answer

    def __call__(self, request: Any) -> Any:
        self.asked.append(request.tool_name)
        return self.answer(request) if callable(self.answer) else self.answer


LOOKALIKES = ["d\u0435lete",  # Cyrillic e
              "\uff44\uff45\uff4c\uff45\uff54\uff45",  # fullwidth: NFKC-normalises to "delete"
              "delete\u200d", "de\u00adlete", "delete\n", "\tdelete", "delete\x00", "DELETE", "Delete",
              "delete()", "functions.delete", "tools/delete"]


@pytest.mark.parametrize("name", LOOKALIKES, ids=ascii)
async def test_a_lookalike_name_in_a_text_reply_reaches_no_tool(name: str) -> None:
    """JSON mode: the name comes from parsing the model's text, and is never normalised."""
    reply = json.dumps({"thought": "x", "name": name, "kwargs": {"path": "/"}})
    approver = Recorder(answer=True)  # would approve anything it is asked: nothing must reach it
    runner = Runner(Agent(tools=gated(), model=ScriptedModel([reply, json.dumps({"_is_answer_final": True,
                                                                                  "_answer": "ok"})])),
                    permission_manager=PermissionManager(approver))
    res = await runner.acall("go")
    assert ran == [] and approver.asked == []
    assert res.step_history[0].observation.startswith("Unknown tool")


@pytest.mark.parametrize("reply", [
    [Function(name="delete", kwargs={"path": "/"}), Function(name="finish", kwargs={"answer": "done"})],
    [Function(name="finish", kwargs={"answer": "done"}), Function(name="delete", kwargs={"path": "/"})],
    Function(name="delete", kwargs={"path": "/"}, _is_answer_final=True, _answer="done"),
], ids=["call-then-finish", "finish-then-call", "call-marked-final"])
@pytest.mark.parametrize("blocked", [False, True])
async def test_a_gated_call_riding_on_the_final_answer_never_runs(reply: Any, blocked: bool) -> None:
    approver = Recorder(answer=True)
    pm = PermissionManager(approver, approval_mode="yolo" if blocked else "default")
    if blocked:
        pm.add_to_blocked("delete")
    runner = Runner(Agent(tools=gated(), model=ScriptedModel([reply], native_tools=True)), permission_manager=pm)
    events: list[Any] = []
    runner.event_handlers.append(events.append)
    res = await runner.acall("go")
    assert res.ok and res.answer == "done"
    assert ran == [] and approver.asked == []
    assert not [e for e in events if getattr(e, "name", "").startswith("agent.tool_call")]


async def test_an_approver_cannot_swap_the_tool_through_the_response() -> None:
    approver = Recorder(answer=ApprovalResponse(ApprovalOutcome.PROCEED_ONCE,
                                                function=Function(name="delete", kwargs={"path": "/"})))
    model = ScriptedModel([Function(name="pay", kwargs={"to": "bob", "amount": 1}),
                           Function(name="finish", kwargs={"answer": "ok"})])
    runner = Runner(Agent(tools=gated(), model=model), permission_manager=PermissionManager(approver))
    res = await runner.acall("go")
    assert ran == [] and approver.asked == ["pay"]
    assert res.step_history[0].status == "cancelled"
    assert "may not change which tool runs" in res.step_history[0].observation


def suspended_runner(db: Path) -> Runner[Any]:
    model = ScriptedModel([Function(name="pay", kwargs={"to": "bob", "amount": 50}),
                           Function(name="finish", kwargs={"answer": "done"})], per_run=True)
    return Runner(Agent(tools=gated(), model=model), store=f"sqlite:///{db}", suspend_for_approval=True)


def waiting_call(db: Path, run_id: str) -> str:
    store = SQLiteRunStore(str(db))
    try:
        return next(e.payload["item"]["id"] for e in store.events(run_id)
                    if e.name == "agent.tool_permission_request")
    finally:
        store.close()


BAD_EDITS = [{"to": "bob", "amount": "lots"}, {"to": "bob"}, {"to": "bob", "amount": 5, "memo": "extra"},
             {"path": "/"}]


@pytest.mark.parametrize("kwargs", BAD_EDITS)
async def test_an_edit_that_fails_validation_is_refused_and_the_call_stays_pending(tmp_path: Path,
                                                                                   kwargs: dict[str, Any]) -> None:
    db = tmp_path / "runs.db"
    first = await suspended_runner(db).acall("pay", id="r1")
    assert first.status == "waiting_for_approval"
    runner = suspended_runner(db)
    call = waiting_call(db, "r1")
    with pytest.raises(InvalidEdit, match="not valid for pay"):
        runner.record_decision("r1", call, approve=True, kwargs=kwargs)
    res = await runner.aresume("r1")  # nothing was recorded: the call still waits, nothing ran
    assert ran == [] and res.status == "waiting_for_approval"
    runner.record_decision("r1", call, approve=True, kwargs={"to": "bob", "amount": 5})  # a valid edit is taken
    res = await suspended_runner(db).aresume("r1")
    assert res.ok and ran == [("pay", ("bob", 5))]


@pytest.mark.parametrize("kwargs", BAD_EDITS)
async def test_a_recorded_edit_that_fails_validation_does_not_run_the_tool(tmp_path: Path,
                                                                           kwargs: dict[str, Any]) -> None:
    """A decision recorded without the schema check (by a process that has no agent to check
    against) is checked again when the run resumes: the call is refused, the tool never runs."""
    db = tmp_path / "runs.db"
    first = await suspended_runner(db).acall("pay", id="r1")
    assert first.status == "waiting_for_approval"
    store = SQLiteRunStore(str(db))
    try:
        record_decision(store, "r1", waiting_call(db, "r1"), approve=True, kwargs=kwargs)  # agent=None: unchecked
    finally:
        store.close()
    res = await suspended_runner(db).aresume("r1")
    assert ran == [] and res.ok
    step = res.step_history[0]
    assert step.status == "cancelled" and "edited arguments are invalid" in step.observation


async def test_a_decision_for_one_runs_call_never_applies_to_another_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    await suspended_runner(db).acall("pay", id="a")
    await suspended_runner(db).acall("pay", id="b")
    call_a = waiting_call(db, "a")
    runner = suspended_runner(db)
    with pytest.raises(UserError, match="not waiting"):
        runner.record_decision("b", call_a, approve=True)  # the right call id, the wrong run
    runner.record_decision("a", call_a, approve=False, reason="no")
    assert (await runner.aresume("a")).ok and ran == []
    # run b was not approved by any of that: it still waits, and resuming it does not run the tool
    res_b = await suspended_runner(db).aresume("b")
    assert res_b.status == "waiting_for_approval" and ran == []
