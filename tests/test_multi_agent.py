"""Agents that use agents: an agent as a tool (child runs) and handoffs, in the three faces,
with approvals, cancellation, usage limits and the journal (a real SQLite store)."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from helpers import cut_journal, names, run_face
from treadle import (
    Agent,
    Function,
    FunctionTool,
    PermissionManager,
    Runner,
    ScriptedModel,
    Usage,
    UsageLimits,
    UserError,
)
from treadle.handoffs import handoff, remove_tool_messages

FACES = ["call", "acall", "astream"]


def final(answer: Any) -> Function:
    return Function(name="finish", kwargs={"answer": answer})


def call(name: str, id: str | None = None, **kwargs: Any) -> Function:
    return Function(id=id, name=name, kwargs=kwargs)


USAGE = Usage(input_tokens=10, output_tokens=2)


def scripted(*replies: Any) -> ScriptedModel:
    return ScriptedModel(list(replies), usage=USAGE)


def pair(inner_replies: list[Any], outer_replies: list[Any], *, inner_tools: list[Any] | None = None,
         answer_type: Any = int) -> tuple[Agent[Any], Agent[Any], list[tuple[int, int]]]:
    added: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        added.append((a, b))
        return a + b

    inner = Agent("calculator", tools=inner_tools if inner_tools is not None else [add], model=scripted(*inner_replies),
                  answer_data_type=answer_type, instructions="Compute sums.")
    outer = Agent("writer", tools=[inner.as_tool(description="Ask the calculator.")], model=scripted(*outer_replies))
    return inner, outer, added


# ---------------------------------------------------------------------------- agent as a tool
@pytest.mark.parametrize("face", FACES)
async def test_an_agent_as_a_tool_runs_a_child_run_whose_typed_answer_is_the_observation(face: str) -> None:
    inner, outer, added = pair([call("add", a=2, b=3), final(5)],
                               [call("calculator", id="q1", input="what is 2+3?"), final("it is 5")])
    runner = Runner(outer)
    res, events = await run_face(runner, face, "write it")
    assert res.status == "success" and res.answer == "it is 5"
    assert added == [(2, 3)]
    obs = res.step_history[0]
    assert obs.function.name == "calculator" and obs.observation == 5  # the inner answer, typed (int)
    inner_events = [e for e in events if e.depth == 1]
    outer_events = [e for e in events if e.depth == 0]
    assert {e.run_id for e in outer_events} == {res.run_id}
    (child,) = {e.run_id for e in inner_events}
    assert child != res.run_id and all(e.parent_run_id == res.run_id for e in inner_events)
    assert names(inner_events) == ["raw", "agent.tool_call_start", "agent.tool_call_complete",
                                   "agent.step_complete", "raw", "agent.execution_complete"]
    # the child's events come between the outer call's start and its completion
    order = [(e.depth, getattr(e, "name", "raw")) for e in events if getattr(e, "data", None) is None
             or e.type == "run_item_stream_event" or e.data is not None]
    start = order.index((0, "agent.tool_call_start"))
    assert order[start + 1][0] == 1 and order.index((0, "agent.tool_call_complete")) > order.index(
        (1, "agent.execution_complete"))
    assert names(outer_events)[-1] == "agent.execution_complete"
    # usage: 2 outer + 2 inner model calls; tool calls: the agent call and the inner add
    assert res.usage.requests == 4 and res.usage.input_tokens == 40 and res.usage.tool_calls == 2
    meta = res.step_history[0].output
    assert meta == 5
    assert inner.model.requests[0].messages[1]["content"] == "what is 2+3?"


async def test_the_tool_schema_takes_a_typed_input() -> None:
    class Query(pydantic.BaseModel):
        a: int
        b: int

    inner = Agent("adder", model=scripted(lambda msgs: final(sum(pydantic.TypeAdapter(dict).validate_json(
        msgs[1]["content"]).values()))), answer_data_type=int)
    t = inner.as_tool(input_type=Query)
    schema = t.definition.func_parameters
    assert schema["required"] == ["input"] and "a" in str(schema)
    outer = Agent("o", tools=[t], model=scripted(call("adder", input={"a": 4, "b": 5}), final("done")))
    res = await Runner(outer).acall("x")
    assert res.step_history[0].observation == 9
    bad = Agent("o2", tools=[inner.as_tool(input_type=Query)],
                model=scripted(call("adder", input={"a": "four"}), final("gave up")))
    res = await Runner(bad).acall("x")
    assert res.answer == "gave up" and res.step_history[0].status == "error"
    assert "input" in str(res.step_history[0].observation)


async def test_a_failed_inner_run_is_an_error_observation_naming_the_inner_run() -> None:
    inner = Agent("broken", model=scripted(call("nope"), call("nope")), max_steps=2)
    outer = Agent("o", tools=[inner.as_tool()], model=scripted(call("broken", input="try"), final("noted")))
    res = await Runner(outer).acall("go")
    assert res.status == "success" and res.answer == "noted"
    step = res.step_history[0]
    assert step.status == "error" and "max_steps" in step.observation and "[run " in step.observation


async def test_usage_limits_count_the_inner_run_too() -> None:
    inner, outer, added = pair([call("add", a=1, b=1), call("add", a=2, b=2), final(6)],
                               [call("calculator", input="sum"), final("x")])
    res = await Runner(outer, usage_limits=UsageLimits(request_limit=3)).acall("go")
    # outer 1 + inner 2 = 3 requests: the inner run's third is refused, the outer ends without its 2nd
    assert added == [(1, 1), (2, 2)]
    assert res.status == "error" and res.error_type == "UsageLimitExceeded", res.error
    assert res.usage.requests == 3


def waiting_pair(started: Any, never: asyncio.Event) -> Agent[Any]:
    """An outer agent calling an inner agent whose tool sets ``started`` and waits forever."""

    async def slow() -> str:
        """Wait."""
        started.set()
        await never.wait()
        return "unreachable"

    inner = Agent("waiter", tools=[slow], model=scripted(call("slow"), final("x")))
    return Agent("o", tools=[inner.as_tool()], model=scripted(call("waiter", input="wait"), final("y")))


@pytest.mark.parametrize("face", ["acall", "astream"])
async def test_cancelling_the_outer_run_cancels_the_inner_run(face: str) -> None:
    started, never = asyncio.Event(), asyncio.Event()

    outer = waiting_pair(started, never)
    runner = Runner(outer)
    events: list[Any] = []
    runner.event_handlers.append(events.append)
    task = asyncio.ensure_future(runner.acall("go") if face == "acall" else _drain(runner))
    await started.wait()
    assert runner.cancel()
    res = await asyncio.wait_for(task, 30)
    assert res.status == "cancelled"
    endings = [(e.depth, e.item.data.status) for e in events if getattr(e, "name", "") == "agent.execution_complete"]
    assert endings == [(1, "cancelled"), (0, "cancelled")]


async def _drain(runner: Runner[Any]) -> Any:
    sr = runner.astream("go")
    async for _ in sr.stream_events():
        pass
    return await sr.wait_for_completion()


async def test_an_inner_tool_needing_approval_asks_through_the_outer_stream() -> None:
    ran: list[int] = []

    def pay(amount: int) -> str:
        """Pay."""
        ran.append(amount)
        return f"paid {amount}"

    inner = Agent("payer", tools=[FunctionTool(pay, require_approval=True)],
                  model=scripted(call("pay", id="p1", amount=3), final("paid")))
    outer = Agent("o", tools=[inner.as_tool()], model=scripted(call("payer", id="o1", input="pay 3"), final("ok")))
    runner = Runner(outer)
    sr = runner.astream("go")
    asked = []
    async for e in sr.stream_events():
        if getattr(e, "name", "") == "agent.tool_permission_request":
            asked.append((e.depth, e.item.id))
            assert [p.id for p in sr.pending_approvals] == ["p1"]
            assert sr.approve("p1")
    res = await sr.wait_for_completion()
    assert asked == [(1, "p1")] and ran == [3] and res.answer == "ok"


@pytest.mark.parametrize("face", FACES)
async def test_an_approval_callback_decides_for_inner_agents_too(face: str) -> None:
    seen: list[str] = []

    def pay(amount: int) -> str:
        """Pay."""
        return f"paid {amount}"

    async def decide(req: Any) -> bool:
        seen.append(req.tool_name)
        return False

    inner = Agent("payer", tools=[FunctionTool(pay, require_approval=True)],
                  model=scripted(call("pay", amount=3), final("refused")))
    outer = Agent("o", tools=[inner.as_tool()], model=scripted(call("payer", input="pay"), final("ok")))
    res, events = await run_face(Runner(outer, permission_manager=PermissionManager(approval_callback=decide)), face,
                                 "go")
    assert seen == ["pay"] and res.status == "success"
    assert [e.depth for e in events if getattr(e, "name", "") == "agent.tool_permission_request"] == [1]


# ---------------------------------------------------------------------------- the journal
def _journaled(tmp_path: Any, inner_replies: list[Any], outer_replies: list[Any], **kw: Any) -> tuple[Runner[Any], Any]:
    inner, outer, added = pair(inner_replies, outer_replies)
    runner = Runner(outer, store=f"sqlite:///{tmp_path}/runs.db", **kw)
    return runner, added


async def test_the_journal_keeps_the_child_run_linked_to_the_parent_call(tmp_path: Any) -> None:
    runner, added = _journaled(tmp_path, [call("add", a=1, b=2), final(3)],
                               [call("calculator", id="k", input="1+2"), final("three")])
    res = await runner.acall("go")
    store = runner.store
    parent_entries = store.events(res.run_id)
    complete = next(e for e in parent_entries if e.name == "agent.tool_call_complete")
    meta = complete.payload["item"]["data"]["output"]["metadata"]
    child = store.get_run(meta["child_run_id"])
    assert child.status == "success" and child.config["parent_run_id"] == res.run_id
    assert child.config["parent_call_id"] == "0:k" and child.config["depth"] == 1
    assert [e.name for e in store.events(child.run_id)].count("agent.execution_complete") == 1
    assert meta["usage"]["requests"] == 2
    assert runner.resume(child.run_id).answer == "3"  # an ended run: its recorded result (as this runner's type)


async def test_suspended_for_an_inner_approval_then_resumed_after_a_restart(tmp_path: Any) -> None:
    ran: list[int] = []

    def make() -> Runner[Any]:
        def pay(amount: int) -> str:
            """Pay."""
            ran.append(amount)
            return f"paid {amount}"

        inner = Agent("payer", tools=[FunctionTool(pay, require_approval=True)],
                      model=ScriptedModel([call("pay", id="p1", amount=9), final("paid 9")], per_run=True))
        outer = Agent("o", tools=[inner.as_tool()],
                      model=ScriptedModel([call("payer", id="o1", input="pay 9"), final("all paid")], per_run=True))
        return Runner(outer, store=f"sqlite:///{tmp_path}/runs.db", suspend_for_approval=True)

    first = make()
    res = await first.acall("go")
    assert res.status == "waiting_for_approval" and ran == [] and "p1" in res.error
    first.store.close()
    # a new process: the decision is recorded on the outer run's id, for the inner call
    second = make()
    (child,) = [r for r in second.store.list_runs(status="waiting_for_approval") if r.run_id != res.run_id]
    assert child.config["parent_run_id"] == res.run_id
    with pytest.raises(UserError, match="inner agent's run"):
        second.resume(child.run_id)  # the outer run is what resumes
    second.record_decision(res.run_id, "p1", approve=True)
    done = await second.aresume(res.run_id)
    assert done.status == "success" and done.answer == "all paid", done.error
    assert ran == [9]
    assert done.step_history[0].observation == "paid 9"
    # resumed again: the ended run's result, nothing runs
    again = await make().aresume(res.run_id)
    assert again.answer == "all paid" and ran == [9]


async def test_a_parent_resumed_after_its_child_ended_reuses_the_childs_result(tmp_path: Any) -> None:
    """The crash between the child's end and the parent's tool_call_complete: the child is not
    run again, its recorded answer is the observation."""
    runner, added = _journaled(tmp_path, [call("add", a=4, b=4), final(8)],
                               [call("calculator", id="k", input="4+4"), final("eight")])
    res = await runner.acall("go")
    store = runner.store
    # cut the parent's journal back to the agent call's start (as if the process died right then)
    entries = store.events(res.run_id)
    cut = next(i for i, e in enumerate(entries) if e.name == "agent.tool_call_start") + 1
    cut_journal(store, res.run_id, lambda e: e.seq <= entries[cut - 1].seq)
    inner2, outer2, added2 = pair([call("add", a=4, b=4), final(8)], [final("eight again")])
    again = await Runner(outer2, store=store).aresume(res.run_id)
    assert again.status == "success" and again.answer == "eight again"
    assert added2 == [] and inner2.model.requests == []  # the child was not run again
    assert again.step_history[0].observation == 8
    assert again.usage.requests == 4  # the child's two calls, counted again for the parent


# ---------------------------------------------------------------------------- handoffs
@pytest.mark.parametrize("face", FACES)
async def test_a_handoff_passes_the_conversation_and_the_answer_type(face: str) -> None:
    refunds = Agent("refunds", model=scripted(final(42)), answer_data_type=int, instructions="Refunds specialist.")
    triage = Agent("triage", handoffs=[refunds], model=scripted(call("transfer_to_refunds", message="wants money")))
    res, events = await run_face(Runner(triage), face, "refund order 7")
    assert res.status == "success" and res.answer == 42
    hand = [e for e in events if getattr(e, "name", "") == "agent.handoff"]
    assert len(hand) == 1 and (hand[0].item.data.from_agent, hand[0].item.data.to_agent) == ("triage", "refunds")
    assert hand[0].item.data.message == "wants money"
    msgs = refunds.model.requests[0].messages
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Refunds specialist.")
    assert msgs[1]["content"] == "refund order 7"  # the history carried over
    assert "transfer_to_refunds" in str(msgs[2]) and "Transferred to refunds." in str(msgs[3])
    assert [s.function.name for s in res.step_history] == ["transfer_to_refunds"]


async def test_handoffs_back_and_forth_and_an_input_filter() -> None:
    a = Agent("a", model=scripted(call("transfer_to_b"), final("a again")))
    b = Agent("b", model=scripted(call("lookup_ok"), call("transfer_to_a")), tools=[_lookup_ok])
    a.add_handoff(handoff(b, input_filter=remove_tool_messages))
    b.add_handoff(a)
    res = await Runner(a).acall("start")
    assert res.answer == "a again"
    assert [s.function.name for s in res.step_history] == ["transfer_to_b", "lookup_ok", "transfer_to_a"]
    b_first = b.model.requests[0].messages
    assert [m["role"] for m in b_first] == ["system", "user"]  # the filter dropped a's tool call


def _lookup_ok() -> str:
    """Look something up."""
    return "ok"


async def test_a_handoff_survives_a_resume(tmp_path: Any) -> None:
    """Cut after the handoff step: the resumed run goes on with the receiving agent."""
    def build(spec_replies: list[Any]) -> Runner[Any]:
        spec = Agent("spec", model=ScriptedModel(spec_replies), answer_data_type=int)
        tri = Agent("tri", handoffs=[spec], model=ScriptedModel([call("transfer_to_spec")]))
        return Runner(tri, store=f"sqlite:///{tmp_path}/h.db")

    runner = build([final(7)])
    res = await runner.acall("go")
    entries = runner.store.events(res.run_id)
    assert "agent.handoff" in [e.name for e in entries]
    last = next(e.seq for e in entries if e.name == "agent.handoff")
    cut_journal(runner.store, res.run_id, lambda e: e.seq <= last)
    again = build([final(8)])
    out = await again.aresume(res.run_id)
    assert out.status == "success" and out.answer == 8  # the specialist's answer type (int)
    spec = again.agent.handoffs[0].agent
    assert spec.model.requests and spec.model.requests[0].messages[0]["role"] == "system"


# ---------------------------------------------------------------------------- replay and fork on the tree
async def test_replay_replays_the_inner_run_with_its_own_journaled_replies(tmp_path: Any) -> None:
    runner, added = _journaled(tmp_path, [call("add", a=2, b=2), final(4)],
                               [call("calculator", id="k", input="2+2"), final("four")])
    res = await runner.acall("go")
    report = await runner.areplay(res.run_id)
    assert report.same, report.differences
    assert added == [(2, 2), (2, 2)]  # the inner tool ran again, with the inner run's journaled call

    def add(a: int, b: int) -> int:
        """Add two numbers (now broken)."""
        return a + b + 1

    inner2 = Agent("calculator", tools=[add], model=scripted(final(0)), answer_data_type=int)
    outer2 = Agent("writer", tools=[inner2.as_tool()], model=scripted(final("x")))
    changed = await Runner(outer2, store=runner.store).areplay(res.run_id)
    assert [(d.tool, d.journaled, d.replayed) for d in changed.differences] == [("calculator/add", 4, 5)]
    assert inner2.model.requests == [] and outer2.model.requests == []  # no model was called


async def test_a_fork_before_the_agent_call_runs_a_new_inner_run(tmp_path: Any) -> None:
    runner, added = _journaled(tmp_path, [call("add", a=1, b=1), final(2)],
                               [call("lookup_ok"), call("calculator", id="k", input="1+1"), final("two")])
    runner.agent.tool_manager.add(_lookup_ok)
    res = await runner.acall("go")
    inner3, outer3, added3 = pair([call("add", a=5, b=5), final(10)], [call("calculator", id="k", input="5+5"),
                                                                        final("ten")])
    outer3.tool_manager.add(_lookup_ok)
    forked = await Runner(outer3, store=runner.store).afork(res.run_id, 1)
    assert forked.status == "success" and forked.answer == "ten" and added3 == [(5, 5)]
    assert forked.run_id != res.run_id
    kids = [r for r in runner.store.list_runs() if r.config.get("parent_run_id") == forked.run_id]
    assert len(kids) == 1 and kids[0].status == "success"


# ---------------------------------------------------------------------------- found by the audit of #17
def test_cancelling_the_outer_run_cancels_the_inner_run_in_the_sync_face() -> None:
    import threading

    started, never = threading.Event(), asyncio.Event()

    outer = waiting_pair(started, never)
    events: list[Any] = []
    runner = Runner(outer, event_handlers=[events.append])
    threading.Thread(target=lambda: (started.wait(30), runner.cancel()), daemon=True).start()
    res = runner.call("go")
    assert res.status == "cancelled"
    endings = [(e.depth, e.item.data.status) for e in events if getattr(e, "name", "") == "agent.execution_complete"]
    assert endings == [(1, "cancelled"), (0, "cancelled")]


@pytest.mark.parametrize("face", FACES)
async def test_a_tool_call_limit_counts_the_agent_call_while_its_child_runs(face: str) -> None:
    """The agent call is a tool call from its start: the child's second add would be the third."""
    inner, outer, added = pair([call("add", a=1, b=1), call("add", a=1, b=2), final(3)],
                               [call("calculator", input="sum"), final("x")])
    res, _ = await run_face(Runner(outer, usage_limits=UsageLimits(tool_calls_limit=2)), face, "go")
    assert added == [(1, 1)]
    assert res.status == "error" and res.error_type == "UsageLimitExceeded", res
    assert "tool calls would exceed the limit of 2" in res.error and res.usage.tool_calls == 2
    assert len(res.step_history) == 1 and res.step_history[0].status == "error"  # the call's step is kept
    assert len(outer.model.requests) == 1  # the caller ended with its child: no answer after the limit


async def test_a_token_limit_spent_by_the_child_stops_the_caller_before_its_next_model_call() -> None:
    inner, outer, added = pair([call("add", a=1, b=1), final(2)], [call("calculator", input="sum"), final("x")])
    res = await Runner(outer, usage_limits=UsageLimits(total_tokens_limit=20)).acall("go")
    # 12 tokens a reply: the child's first makes 24, past 20: the child ends, and so does its caller
    assert res.status == "error" and res.error_type == "UsageLimitExceeded", res
    assert added == [] and len(outer.model.requests) == 1 and len(inner.model.requests) == 1


def _handoff_runner(store: str, spec_replies: list[Any]) -> Runner[Any]:
    spec = Agent("spec", tools=[_lookup_ok], model=ScriptedModel(spec_replies), answer_data_type=int)
    tri = Agent("tri", handoffs=[spec], model=ScriptedModel([call("transfer_to_spec")]))
    return Runner(tri, store=store)


async def test_a_finished_handoff_run_resumed_gives_the_receiving_agents_answer_type(tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path}/h.db"
    res = await _handoff_runner(store, [final(7)]).acall("go")
    assert res.answer == 7
    again = await _handoff_runner(store, []).aresume(res.run_id)  # ended: its recorded result
    assert again.answer == 7 and isinstance(again.answer, int)


async def test_a_fork_after_a_handoff_goes_on_with_the_receiving_agent(tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path}/h.db"
    res = await _handoff_runner(store, [call("lookup_ok"), final(7)]).acall("go")
    runner = _handoff_runner(store, [final(8)])
    forked = await runner.afork(res.run_id, 1)  # keeps step 0, the handoff
    assert forked.status == "success" and forked.answer == 8, forked
    assert [s.function.name for s in forked.step_history] == ["transfer_to_spec"]
    assert runner.agent.model.requests == []  # the triage agent had handed over: it is not asked again


async def test_replay_follows_the_handoffs(tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path}/h.db"
    res = await _handoff_runner(store, [call("lookup_ok"), final(7)]).acall("go")
    runner = _handoff_runner(store, [])
    report = await runner.areplay(res.run_id)
    assert report.same and report.replayed_answer == 7, report  # lookup_ok is the receiving agent's tool
    assert runner.agent.model.requests == [] and runner.agent.handoffs[0].agent.model.requests == []


def test_keep_last_messages_never_keeps_a_tool_result_without_its_call() -> None:
    from treadle.handoffs import keep_last_messages

    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "f"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "r1"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "c2", "function": {"name": "g"}}]},
               {"role": "tool", "tool_call_id": "c2", "content": "r2"}]
    assert keep_last_messages(2)(history) == [history[0], *history[3:]]
    assert keep_last_messages(1)(history) == [history[0]]  # "r2" alone would answer no call
    assert keep_last_messages(0)(history) == [history[0]]
    assert keep_last_messages(9)(history) == history


async def test_a_filtered_handoff_between_native_tool_models_keeps_a_valid_history() -> None:
    from treadle.handoffs import keep_last_messages

    spec = Agent("spec", model=ScriptedModel([final("ok")], native_tools=True))
    tri = Agent("tri", handoffs=[handoff(spec, input_filter=keep_last_messages(1))],
                model=ScriptedModel([call("transfer_to_spec", message="m")], native_tools=True))
    res = await Runner(tri).acall("hello")
    assert res.answer == "ok"
    assert [m["role"] for m in spec.model.requests[0].messages] == ["user"], "no instructions: no system message"


async def test_replay_decides_approvals_as_the_journal_says_inside_inner_runs(tmp_path: Any) -> None:
    from treadle.permissions import ApprovalResponse

    ran: list[int] = []

    def pay(amount: int) -> str:
        """Pay."""
        ran.append(amount)
        return f"paid {amount}"

    def build(pm: Any = None) -> Runner[Any]:
        inner = Agent("payer", tools=[FunctionTool(pay, require_approval=True)], model=ScriptedModel(
            [call("pay", id="p1", amount=3), call("pay", id="p2", amount=4000), final("done")], per_run=True))
        outer = Agent("o", tools=[inner.as_tool()], model=ScriptedModel([call("payer", id="o1", input="pay"),
                                                                          final("ok")], per_run=True))
        return Runner(outer, store=f"sqlite:///{tmp_path}/a.db", permission_manager=pm)

    def decide(req: Any) -> Any:  # an edit, then a denial with a reason
        if req.tool.kwargs["amount"] == 3:
            return ApprovalResponse.approve(kwargs={"amount": 5})
        return ApprovalResponse.deny("too much")

    res = await build(PermissionManager(approval_callback=decide)).acall("go")
    assert res.answer == "ok" and ran == [5]
    report = await build().areplay(res.run_id)  # no approver here: the journal decides
    assert report.same, report.differences
    assert ran == [5, 5]  # the edited call ran again as edited; the denied one did not
