"""Every plug point checks what it is given when it is given (PlugError, a UserError, naming
the object's type and the missing methods), not with an AttributeError at the first step."""

from __future__ import annotations

from typing import Any

import pytest

import treadle
from treadle import Agent, ConversationMemory, PermissionManager, Runner, ScriptedModel, UserError
from treadle.errors import PlugError
from treadle.memory import InMemoryStore
from treadle.models.adalflow_client import AdalFlowModel
from treadle.protocols import (
    MemoryProtocol,
    MemoryStore,
    ModelClient,
    PermissionManagerProtocol,
    RunStore,
    check_plug,
    protocol_methods,
)
from treadle.store import SQLiteRunStore
from treadle import compat
from treadle.compat import GeneratorOutput


def _agent(**kwargs: Any) -> Agent[str]:
    return Agent(model=ScriptedModel(["done"]), planner_mode="json", **kwargs)


def _raises(match: str, *names: str) -> Any:
    """A PlugError (also a UserError and a TypeError) whose message names ``names``."""
    ctx = pytest.raises(UserError, match=match)

    class _Check:
        def __enter__(self) -> None:
            self.inner = ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = ctx.__exit__(*exc)
            err = self.inner.value
            assert isinstance(err, PlugError) and isinstance(err, TypeError)
            for n in names:
                assert n in str(err), (n, str(err))
            return bool(handled)

    return _Check()


# ------------------------------------------------------------------ the protocol reader
def test_protocol_methods_lists_methods_not_attributes() -> None:
    assert protocol_methods(ModelClient) == ("request",)  # native_tools is data, read with a default
    assert protocol_methods(MemoryProtocol) == ("reset_pending_query", "__call__", "add_user_query",
                                                "add_assistant_response")
    assert set(protocol_methods(RunStore)) == {"commit", "acquire", "renew", "get_run", "list_runs", "events",
                                               "close"}
    assert set(protocol_methods(PermissionManagerProtocol)) == {"register_tool", "is_approval_required",
                                                               "check_permission"}


# ------------------------------------------------------------------ model
class _NotAModel:
    def generate(self, prompt: str) -> str:
        return prompt


class _AdalFlowShaped:  # call/acall only: the AdalFlow adapter applies
    def call(self, api_kwargs: dict[str, Any] | None = None, model_type: Any = None) -> str:
        return '{"thought": "t", "_is_answer_final": true, "_answer": "ok"}'

    def parse_chat_completion(self, completion: Any) -> GeneratorOutput[Any]:
        return GeneratorOutput(raw_response=completion)


def test_model_plug_point(monkeypatch: pytest.MonkeyPatch) -> None:
    Agent(model=ScriptedModel(["x"]))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    Agent(model="openai:gpt-4o")  # a string is checked now, resolved on first use
    with _raises("_NotAModel", "request()", "call()", "acall()"):
        compat.Agent(model=_NotAModel())
    with _raises("_NotAModel", "request()"):
        Agent(model=_NotAModel())
    with _raises("_NotAModel", "request()"):
        compat.Agent(model_client=_NotAModel())
    with _raises("_AdalFlowShaped", "AdalFlow-style", "treadle.compat.Agent"):
        Agent(model=_AdalFlowShaped())
    agent = Agent(model=ScriptedModel(["x"]))
    with _raises("_NotAModel", "request()"):
        agent.model = _NotAModel()  # type: ignore[assignment]


def test_adalflow_client_is_checked_after_adaptation() -> None:
    agent = compat.Agent(model_client=_AdalFlowShaped())
    assert isinstance(agent.model, AdalFlowModel)
    assert compat.Runner(agent).call("hi").answer == "ok"


# ------------------------------------------------------------------ planner
class _Planner:
    def call(self, **kwargs: Any) -> GeneratorOutput[Any]:
        return GeneratorOutput(data=None, error="no")


class _NotAPlanner:
    def plan(self) -> None: ...


def test_planner_plug_point() -> None:
    compat.Agent(planner=_Planner())
    with _raises("_NotAPlanner", "call()", "acall()"):
        compat.Agent(planner=_NotAPlanner())  # type: ignore[arg-type]

    class Shaped:  # an agent-shaped object, as the seed's tests build them
        tool_manager = None
        max_steps = 3
        answer_data_type = str

        def __init__(self, planner: Any) -> None:
            self.planner = planner

    compat.Runner(Shaped(_Planner()))
    with _raises("_NotAPlanner", "call()"):
        compat.Runner(Shaped(_NotAPlanner()))
    with _raises("has no planner"):
        compat.Runner(object())
    with _raises("treadle.compat.Runner"):  # treadle's Runner drives treadle Agents
        Runner(Shaped(_Planner()))  # type: ignore[arg-type]


# ------------------------------------------------------------------ tools
def test_tool_plug_point() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    assert _agent(tools=[add]).tool_manager.names == ["add"]
    with pytest.raises(UserError, match="not a tool"):
        _agent(tools=[42])


class _Toolset:  # an MCP server's shape: many tools from one object
    tools_changed = False

    def treadle_tools(self) -> list[Any]:
        def ping() -> str:
            return "pong"

        return [ping]


class _NotAToolset:  # a toolset written against another name for the method
    tools_changed = False

    def tools(self) -> list[Any]:
        return []


def test_toolset_plug_point() -> None:
    assert _agent(tools=[_Toolset()]).tool_manager.names == ["ping"]
    with pytest.raises(UserError, match=r"not a tool: .*_NotAToolset.*treadle_tools\(\)"):
        _agent(tools=[_NotAToolset()])


# ------------------------------------------------------------------ permission manager / approver
class _Approver:
    def register_tool(self, name: str, require_approval: bool = True) -> None: ...

    def is_approval_required(self, name: str) -> bool:
        return False

    async def check_permission(self, function: Any) -> tuple[Any, ...]:
        return (True, function, None)


class _HalfApprover:
    def register_tool(self, name: str, require_approval: bool = True) -> None: ...


def test_permission_manager_plug_point() -> None:
    Runner(_agent(), permission_manager=_Approver())
    with _raises("_HalfApprover", "is_approval_required()", "check_permission()"):
        Runner(_agent(), permission_manager=_HalfApprover())  # type: ignore[arg-type]
    runner = Runner(_agent())
    with _raises("_HalfApprover", "check_permission()"):
        runner.set_permission_manager(_HalfApprover())  # type: ignore[arg-type]


def test_approver_plug_point() -> None:
    PermissionManager(approval_callback=lambda request: True)
    with pytest.raises(UserError, match=r"approval_callback must be callable.*str"):
        PermissionManager(approval_callback="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ memory
class _HalfMemory:
    def __call__(self) -> str:
        return ""

    def add_user_query(self, query: Any) -> None: ...


class _HalfStore:
    def append_turn(self, session_id: str, turn: Any) -> int:
        return 0

    def load_turns(self, session_id: str, last: int | None = None) -> list[Any]:
        return []


def test_memory_plug_points() -> None:
    Runner(_agent(), conversation_memory=ConversationMemory())
    with _raises("_HalfMemory", "reset_pending_query()", "add_assistant_response()"):
        Runner(_agent(), conversation_memory=_HalfMemory())  # type: ignore[arg-type]
    ConversationMemory(InMemoryStore())
    with _raises("_HalfStore", "list_sessions()", "delete_session()"):
        ConversationMemory(_HalfStore())  # type: ignore[arg-type]
    with _raises("MemoryStore", "pass max_turns by name"):
        ConversationMemory(5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ run store
class _NoCommit:
    """A store written against an old interface: everything but commit."""

    def acquire(self, run_id: str, owner: str, ttl: float) -> Any: ...
    def renew(self, leases: Any, ttl: float) -> list[str]:
        return []
    def get_run(self, run_id: str) -> Any: ...
    def list_runs(self, *, status: str | None = None, limit: int = 100) -> list[Any]:
        return []
    def events(self, run_id: str) -> list[Any]:
        return []
    def close(self) -> None: ...


def test_run_store_plug_point(tmp_path: Any) -> None:
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    try:
        assert Runner(_agent(), store=store).store is store
    finally:
        store.close()
    with _raises("_NoCommit", "commit()"):
        Runner(_agent(), store=_NoCommit())  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown store"):
        Runner(_agent(), store="mysql://nope")


# ------------------------------------------------------------------ event sink
def test_event_sink_plug_point() -> None:
    seen: list[Any] = []
    Runner(_agent(), event_handlers=[seen.append]).call("hi")
    assert seen and seen[-1].name == "agent.execution_complete"
    with _raises("EventSink", "__call__()"):
        Runner(_agent(), event_handlers=[object()])  # type: ignore[list-item]


# ------------------------------------------------------------------ the exports
def test_protocols_are_exported() -> None:
    for name in ("ModelClient", "StreamingModelClient", "Toolset", "PermissionManagerProtocol", "MemoryProtocol",
                 "MemoryStore", "RunStore", "EventSink", "RunObserver", "PlugError"):
        assert name in treadle.__all__ and getattr(treadle, name) is not None
    assert treadle.MemoryStore is MemoryStore
    for name in ("AdalFlowClient", "SeedPlanner", "SeedToolManager"):  # AdalFlow's: in treadle.compat
        assert name not in treadle.__all__ and name in compat.__all__ and getattr(compat, name) is not None


def test_check_plug_can_fail() -> None:
    check_plug(InMemoryStore(), MemoryStore, "memory store")
    with pytest.raises(PlugError, match="int does not fit the MemoryStore protocol"):
        check_plug(1, MemoryStore, "memory store")
