"""Seed contract: ConversationMemory (spec §11) and PermissionManager (spec §10)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers import run_face
from treadle import ScriptedModel
from treadle.compat import (
    Agent,
    ApprovalOutcome,
    ApprovalResponse,
    AssistantResponse,
    ConversationMemory,
    Function,
    FunctionOutput,
    FunctionTool,
    PermissionManager,
    Runner,
    ToolCallPermissionRequest,
    ToolManager,
    ToolOutput,
    UserQuery,
    set_seed_compat,
)
from treadle.memory import Conversation, TurnDB


# ---------------------------------------------------------------------- ConversationMemory
def test_history_text_is_the_seeds() -> None:
    memory = ConversationMemory()
    assert memory() == "" and memory.call() == ""
    memory.add_dialog_turn("Hello", "Hi! How can I help you?")
    assert memory() == "User:\nquery: Hello\nAssistant: Hi! How can I help you?"
    memory.add_user_query("How are you?")
    memory.add_assistant_response("I'm good!")
    assert memory() == ("User:\nquery: Hello\nAssistant: Hi! How can I help you?\n"
                        "User:\nquery: How are you?\nAssistant: I'm good!")
    assert memory.memory() == memory()


def test_turn_ids_and_the_current_conversation() -> None:
    memory = ConversationMemory(user_id="u1")
    first = memory.add_user_query(UserQuery(query_str="What is Python?"))
    assert isinstance(first, str) and first
    assert memory._pending_user_query["user_query"].query_str == "What is Python?"
    assert memory.add_assistant_response(AssistantResponse(response_str="A language.")) == first
    second = memory.add_dialog_turn("Easy?", "Yes.")
    assert second != first
    conv = memory.current_conversation
    assert isinstance(conv, Conversation) and conv.user_id == "u1"
    assert list(conv.dialog_turns) == [0, 1]
    assert [(t.id, t.order) for t in conv.dialog_turns.values()] == [(first, 0), (second, 1)]
    assert conv.dialog_turns[0].user_query.query_str == "What is Python?"
    assert conv.dialog_turns[1].assistant_response.response_str == "Yes."
    assert "query: Easy?" in conv.get_chat_history_str()


def test_pending_query_errors() -> None:
    memory = ConversationMemory()
    with pytest.raises(ValueError, match="No pending user query found"):
        memory.add_assistant_response("Random response")
    memory.add_user_query("First question")
    with pytest.raises(ValueError, match="already a pending user query"):
        memory.add_user_query("Second question")
    memory.reset_pending_query()
    assert memory._pending_user_query is None
    memory.add_user_query("Second question")


def test_clear_keeps_the_conversation_id_and_the_turn_db() -> None:
    db = TurnDB()
    memory = ConversationMemory(turn_db=db)
    conv_id = memory.current_conversation.id
    memory.add_dialog_turn("Q1", "A1")
    memory.add_user_query("Q2")
    memory.add_assistant_response("A2")
    memory.add_user_query("pending")
    assert len(db.items) == 2 and db.items[0]["user_query"].query_str == "Q1"
    memory.clear_conversation_turns()
    assert memory() == "" and len(memory.current_conversation.dialog_turns) == 0
    assert memory._pending_user_query is None and memory.current_conversation.id == conv_id
    assert len(db.items) == 2
    memory.add_dialog_turn("New", "Fresh")
    assert "Q1" not in memory() and "New" in memory()


def test_a_seed_style_turn_db_positionally() -> None:
    class LocalDB:
        def __init__(self) -> None:
            self.items: list[Any] = []

    db = LocalDB()
    memory = ConversationMemory(db)
    memory.add_dialog_turn("Custom DB test", "Custom DB response")
    assert len(db.items) == 1 and "Custom DB test" in memory()


def test_metadata_only_when_asked() -> None:
    memory = ConversationMemory()
    memory.add_dialog_turn(UserQuery("First", metadata={"public": "visible", "private": "hidden"}),
                           AssistantResponse("Answer", metadata={"confidence": "high", "sources": 3}))
    memory.add_dialog_turn(UserQuery("Second", metadata={"public": "also visible"}), "Two")
    assert ":" not in memory().replace("User:", "").replace("Assistant:", "").replace("query:", "")
    filtered = memory(metadata_filter=["public", "sources"])
    assert "public: visible" in filtered and "public: also visible" in filtered and "sources: 3" in filtered
    assert "private" not in filtered and "confidence" not in filtered
    assert filtered.startswith("User:\nquery: First\npublic: visible\nAssistant: Answer\nsources: 3\n")
    set_seed_compat(True)
    try:
        everything = memory()
    finally:
        set_seed_compat(None)
    assert "private: hidden" in everything and "confidence: high" in everything


def test_new_conversation() -> None:
    memory = ConversationMemory()
    memory.add_dialog_turn("old", "turn")
    old = memory.current_conversation.id
    memory.new_conversation()
    assert memory() == "" and memory.current_conversation.id != old and memory.conver_db == [old]


# ---------------------------------------------------------------------- PermissionManager
def tools() -> ToolManager:
    def delete(path: str) -> str:
        return f"deleted {path}"

    def checked(path: str) -> str:
        return f"wrote {path}"

    def veto(path: str) -> Any:
        if path.startswith("/etc"):
            return FunctionOutput(name="checked", error=f"refusing to touch {path}")
        return f"diff for {path}"

    return ToolManager([FunctionTool(delete, require_approval=True),
                        FunctionTool(checked, require_approval=True, pre_execute_callback=veto)])


def test_registration_and_modes() -> None:
    pm = PermissionManager(None, "default", tools())
    assert pm.tool_require_approval == {"delete": True, "checked": True}
    pm.register_tool("other", False)
    assert pm.is_approval_required("delete") and not pm.is_approval_required("other")
    assert not pm.is_approval_required("never-registered")
    pm.add_to_always_allowed("delete")
    assert not pm.is_approval_required("delete")
    pm.remove_from_always_allowed("delete")
    pm.add_to_blocked("other")
    assert pm.is_approval_required("other"), "blocked means: always ask"
    pm.remove_from_blocked("other")
    assert not pm.is_approval_required("other")
    assert not PermissionManager(approval_mode="yolo", tool_manager=tools()).is_approval_required("delete")
    assert not PermissionManager(approval_mode="auto_approve", tool_manager=tools()).is_approval_required("delete")


async def test_check_permission_outcomes() -> None:
    seen: list[dict[str, Any]] = []
    outcomes = iter([ApprovalOutcome.PROCEED_ONCE, ApprovalResponse(ApprovalOutcome.CANCEL, response_data="no"),
                     ApprovalOutcome.PROCEED_ALWAYS])

    async def callback(request: Any) -> Any:
        seen.append(pm.get_pending_approvals())
        await asyncio.sleep(0)
        return next(outcomes)

    pm = PermissionManager(approval_callback=callback, tool_manager=tools())
    fn = Function(id="c1", name="delete", kwargs={"path": "/tmp"})
    assert await pm.check_permission(Function(id="c0", name="free")) == (True, Function(id="c0", name="free"), None)
    allowed, chosen, _ = await pm.check_permission(fn)
    assert allowed and chosen.kwargs == {"path": "/tmp"}
    assert list(seen[0]) == ["c1"] and seen[0]["c1"].tool_name == "delete" and pm.get_pending_approvals() == {}
    assert await pm.check_permission(fn) == (False, None, "no")
    assert (await pm.check_permission(fn))[0] and "delete" in pm.always_allowed_tools
    assert (await pm.check_permission(fn))[0] and len(seen) == 3, "always allowed: not asked again"


async def test_a_failing_callback_denies_and_clarify_gets_the_answer() -> None:
    def boom(request: Any) -> Any:
        raise RuntimeError("ui crashed")

    pm = PermissionManager(boom)
    pm.register_tool("delete", True)
    assert (await pm.check_permission(Function(id="x", name="delete")))[:2] == (False, None)
    pm = PermissionManager(lambda r: ApprovalResponse(ApprovalOutcome.PROCEED_ONCE, response_data="blue"))
    pm.register_tool("clarify", True)
    allowed, chosen, data = await pm.check_permission(Function(id="q", name="clarify", kwargs={"question": "?"}))
    assert allowed and data == "blue" and chosen.kwargs == {"question": "?", "user_response": "blue"}


def test_create_permission_event_and_the_pre_execute_callback() -> None:
    pm = PermissionManager(tool_manager=tools())
    event = pm.create_permission_event(Function(id="c9", name="delete", kwargs={"path": "/tmp"}))
    assert isinstance(event, ToolCallPermissionRequest) and event.data.id == "c9" and event.data.tool_name == "delete"
    event = pm.create_permission_event(Function(id="c10", name="checked", kwargs={"path": "/home/x"}))
    assert event.data.confirmation_details == "diff for /home/x"
    vetoed = pm.create_permission_event(Function(id="c11", name="checked", kwargs={"path": "/etc/passwd"}))
    assert isinstance(vetoed, ToolOutput) and vetoed.status == "error" and "refusing" in vetoed.observation


async def test_a_run_honours_the_veto_and_denies_without_an_approver(face: str) -> None:
    model = ScriptedModel([Function(name="checked", kwargs={"path": "/etc/passwd"}),
                           Function(name="delete", kwargs={"path": "/tmp"}),
                           Function(name="finish", kwargs={"answer": "done"})])
    runner = Runner(Agent(tool_manager=tools(), model=model), permission_manager=PermissionManager(lambda r: True))
    res, events = await run_face(runner, face, "q")
    vetoed, approved = res.step_history
    assert vetoed.status == "error" and "refusing" in vetoed.observation
    assert approved.observation == "deleted /tmp"
    model = ScriptedModel([Function(name="delete", kwargs={"path": "/tmp"}),
                           Function(name="finish", kwargs={"answer": "x"})])
    res = await Runner(Agent(tool_manager=tools(), model=model), permission_manager=None).acall("q")
    assert res.step_history[0].status == "cancelled", "no approver: denied (seed bug B13: it ran)"


def test_metadata_values_render_as_the_seed_printed_them() -> None:
    memory = ConversationMemory()
    memory.add_dialog_turn(UserQuery("q", metadata={"context_str": None, "n": 3, "tags": ["a"]}), "a")
    assert memory(metadata_filter=["context_str", "n", "tags"]) == \
        'User:\nquery: q\ncontext_str: None\nn: 3\ntags: ["a"]\nAssistant: a'
