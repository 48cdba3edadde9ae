"""Context compaction (treadle.compaction, treadle._context): long runs against a model with a
4 k-token window that refuses oversize requests as a provider does, journaled, replayed and forked;
the strategies one by one; its cost in usage and limits; a long chat on a small window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from treadle import (
    Agent,
    ClearToolResults,
    Compaction,
    ConversationMemory,
    Function,
    Runner,
    ScriptedModel,
    SlidingWindow,
    Summarize,
    UnknownArgumentError,
    UsageLimits,
    UserError,
)
from treadle.compaction import SUMMARY_INSTRUCTIONS, SUMMARY_OPEN, apply_layout, clear_results, layout_of, slide
from treadle.errors import JournalError, ModelContextTooLongError
from treadle.events import COMPACTION, RunItemStreamEvent
from treadle.memory import SQLiteMemoryStore

WINDOW = 4096


class Provider:
    """A model with a 4 k-token window: it counts a request as a provider would (its own way:
    the messages as JSON, ~4 characters a token) and refuses one that does not fit. It answers
    summary requests with a summary, and otherwise fetches pages 1..steps, then answers."""

    def __init__(self, steps: int, window: int = WINDOW) -> None:
        self.steps, self.window = steps, window
        self.step = self.summaries = self.refused = self.calls = self.largest = 0

    def tokens(self, messages: list[dict[str, Any]]) -> int:
        return len(json.dumps(messages)) // 4

    def __call__(self, messages: list[dict[str, Any]]) -> Any:
        self.calls += 1
        n = self.tokens(messages)
        if n > self.window - 256:  # (room for the reply)
            self.refused += 1
            return ModelContextTooLongError(f"maximum context length is {self.window} tokens; the request has {n}")
        self.largest = max(self.largest, n)
        if messages[0]["content"] == SUMMARY_INSTRUCTIONS:
            self.summaries += 1
            return f"Pages 1 to {self.step} were fetched; each said ok."
        self.step += 1
        if self.step > self.steps:
            return Function(name="finish", kwargs={"answer": f"fetched {self.steps} pages"})
        return Function(name="fetch", kwargs={"page": self.step})


def fetch(page: int) -> str:
    """Fetch a page."""
    return f"page {page}: " + "lorem ipsum dolor sit amet " * 25 + "ok"


def long_run(tmp_path: Path, context: Any, steps: int = 300) -> tuple[Runner[Any], Provider, Any]:
    provider = Provider(steps)
    model = ScriptedModel([provider], repeat_last=True)
    model.record_requests = False
    runner = Runner(Agent(tools=[fetch], model=model, max_steps=steps + 10, context=context),
                    store=f"sqlite:///{tmp_path / 'runs.db'}")
    return runner, provider, runner.call(f"Fetch pages 1 to {steps}.")


def journaled_compactions(runner: Runner[Any], run_id: str) -> list[dict[str, Any]]:
    assert runner.store is not None
    return [e.payload["item"]["data"] for e in runner.store.events(run_id) if e.name == COMPACTION]


def test_a_300_step_run_on_a_4k_window_ends_successfully(tmp_path: Path) -> None:
    runner, provider, result = long_run(tmp_path, Compaction(window=WINDOW))
    assert result.status == "success", result.error
    assert result.answer == "fetched 300 pages" and len(result.step_history) == 300
    assert provider.refused == 0  # compacted before the window, by the count made before sending
    assert provider.summaries > 0
    found = journaled_compactions(runner, result.run_id)
    assert len(found) >= provider.summaries
    assert sum(1 for c in found if c["summary"]) == provider.summaries
    for c in found:
        assert c["tokens_after"] < c["tokens_before"] and c["window"] == WINDOW and c["reason"] == "threshold"
        assert c["replaced"] and c["strategies"]
    # the summary calls are in the usage (a request each, beside the 301 planner calls)
    assert result.usage.requests == 301 + provider.summaries
    # replay: the journaled replies and compactions, no model call
    calls = provider.calls
    report = runner.replay(result.run_id)
    assert provider.calls == calls
    assert report.same and report.status == "success" and report.steps == 300


def test_by_default_a_refused_request_is_compacted_and_sent_again(tmp_path: Path) -> None:
    """A model whose window treadle does not know: the provider's refusal triggers the compaction,
    and the refused size bounds the window from then on."""
    runner, provider, result = long_run(tmp_path, "auto")
    assert result.status == "success", result.error
    assert len(result.step_history) == 300
    assert 1 <= provider.refused <= 3
    found = journaled_compactions(runner, result.run_id)
    assert found[0]["reason"] == "refused"
    assert {c["reason"] for c in found[1:]} <= {"threshold", "overflow", "refused"}


def test_without_compaction_the_same_run_fails_at_the_window(tmp_path: Path) -> None:
    runner, provider, result = long_run(tmp_path, None)
    assert result.status == "error" and result.error_type == "ModelContextTooLongError"
    assert provider.refused == 1 and len(result.step_history) < 40
    assert result.usage.requests == provider.calls  # the refused request counts: the provider was asked


def test_a_refused_request_counts_in_the_usage(tmp_path: Path) -> None:
    runner, provider, result = long_run(tmp_path, "auto", steps=80)
    assert result.status == "success" and provider.refused >= 1
    assert result.usage.requests == provider.calls == 81 + provider.summaries + provider.refused


def test_replay_of_a_native_mode_agent_rebuilds_the_compacted_context(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A native tool-calling agent's replay applies its journaled compactions: each replayed request
    is the request the model saw, with no model call."""
    import treadle._replay_tree as replay_tree

    provider = Provider(60)
    seen: list[list[dict[str, Any]]] = []

    def model_reply(messages: list[dict[str, Any]]) -> Any:
        reply = provider(messages)
        if messages[0]["content"] != SUMMARY_INSTRUCTIONS and not isinstance(reply, Exception):
            seen.append(json.loads(json.dumps(messages)))  # what the model answered (not what it refused)
        return reply

    model = ScriptedModel([model_reply], repeat_last=True, native_tools=True)
    runner = Runner(Agent(tools=[fetch], model=model, max_steps=70, context=Compaction(window=WINDOW)),
                    store=f"sqlite:///{tmp_path / 'runs.db'}")
    result = runner.call("Fetch pages 1 to 60.")
    assert result.status == "success" and runner.agent.planner.mode(model) == "native"
    assert journaled_compactions(runner, result.run_id) and provider.summaries
    twins: list[Any] = []
    make_twin = replay_tree.twin_agent
    monkeypatch.setattr(replay_tree, "twin_agent", lambda *a, **k: twins.append(make_twin(*a, **k)) or twins[-1])
    calls = provider.calls
    report = runner.replay(result.run_id)
    assert provider.calls == calls and report.same and report.steps == 60
    replayed = [json.loads(json.dumps(r.messages)) for r in twins[0].model.requests if r.messages[0]["content"]
                != SUMMARY_INSTRUCTIONS]
    assert len(replayed) == len(seen) == 61
    for step, (was, now) in enumerate(zip(seen, replayed)):
        assert now == was, step  # the context the model saw, compactions included


def test_a_fork_before_a_compaction_compacts_again(tmp_path: Path) -> None:
    import re

    def script(messages: list[dict[str, Any]]) -> Any:  # the next page after the last one asked for
        if messages[0]["content"] == SUMMARY_INSTRUCTIONS:
            return "Pages fetched so far: all ok."
        pages = [int(p) for m in messages if m["role"] == "assistant"
                 for p in re.findall(r'"page": ?(\d+)', str(m["content"]))]
        nxt = max(pages, default=0) + 1
        return Function(name="fetch", kwargs={"page": nxt}) if nxt <= 60 else \
            Function(name="finish", kwargs={"answer": "fetched 60 pages"})

    runner = Runner(Agent(tools=[fetch], model=ScriptedModel([script], repeat_last=True), max_steps=70,
                          context=Compaction(window=WINDOW)), store=f"sqlite:///{tmp_path / 'runs.db'}")
    result = runner.call("Fetch pages 1 to 60.")
    assert result.status == "success"
    found = journaled_compactions(runner, result.run_id)
    first = found[0]["step"]
    forked = runner.fork(result.run_id, first)  # steps 0..first-1 kept: the compaction before step `first` is not
    assert forked.status == "success" and forked.answer == "fetched 60 pages"
    again = journaled_compactions(runner, forked.run_id)
    # made again by the fork, not copied from the original: at the same steps, the same way (the fork's estimate
    # is calibrated again from the journaled replies it kept)
    assert [(c["step"], c["layout"]) for c in again] == [(c["step"], c["layout"]) for c in found]


def test_summary_tokens_count_in_the_usage_limits(tmp_path: Path) -> None:
    provider = Provider(300)
    model = ScriptedModel([provider], repeat_last=True)
    planner_calls_allowed = 40
    runner = Runner(Agent(tools=[fetch], model=model, max_steps=400, context=Compaction(window=WINDOW)),
                    usage_limits=UsageLimits(request_limit=planner_calls_allowed))
    result = runner.call("Fetch pages 1 to 300.")
    assert result.status == "error" and result.error_type == "UsageLimitExceeded"
    assert provider.summaries >= 1
    assert result.usage.requests == planner_calls_allowed  # planner and summary calls together
    assert len(result.step_history) == planner_calls_allowed - provider.summaries  # a step per planner call


def test_a_summary_model_of_its_own() -> None:
    provider = Provider(80)
    summaries: list[list[dict[str, Any]]] = []
    cheap = ScriptedModel([lambda messages: summaries.append(messages) or "Pages fetched so far: all ok."],
                          repeat_last=True, name="cheap")
    agent = Agent(tools=[fetch], model=ScriptedModel([provider], repeat_last=True), max_steps=100,
                  context=Compaction(window=WINDOW, strategies=[Summarize(model=cheap, keep_last=4)]))
    events: list[Any] = []
    result = Runner(agent, event_handlers=[events.append]).call("Fetch pages 1 to 80.")
    assert result.status == "success" and provider.summaries == 0 and summaries
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    assert infos and all(i.summary_model == "cheap" and i.strategies == ["summarize"] for i in infos)
    # a later summary folds the earlier one in
    assert any("Pages fetched so far" in m["content"] for m in summaries[-1])


# ---------------------------------------------------------------------------- the strategies
def native_steps(n: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}]
    for i in range(n):
        ids = [f"c{i}a", f"c{i}b"]
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c, "type": "function", "function": {"name": "fetch", "arguments": "{}"}} for c in ids]})
        msgs += [{"role": "tool", "tool_call_id": c, "content": "x" * 400} for c in ids]
    return msgs


def test_clearing_keeps_the_calls_and_the_newest_results() -> None:
    msgs = native_steps(5)
    out, n = clear_results(msgs, ClearToolResults(keep_last=3))
    assert n == 7 and len(out) == len(msgs)
    assert [m.get("tool_calls") for m in out] == [m.get("tool_calls") for m in msgs]
    results = [m for m in out if m["role"] == "tool"]
    assert all(m["content"] == "[tool result cleared to save context: 400 characters]" for m in results[:7])
    assert all(m["content"] == "x" * 400 for m in results[7:])


def test_the_sliding_window_never_splits_a_call_from_its_results() -> None:
    msgs = native_steps(6)
    for budget in range(50, 2000, 37):
        out, dropped = slide(msgs, lambda ms: sum(len(str(m.get("content") or "")) // 4 for m in ms), budget,
                             SlidingWindow(keep_last=2))
        answered = {m["tool_call_id"] for m in out if m["role"] == "tool"}
        asked = {c["id"] for m in out for c in m.get("tool_calls") or ()}
        assert answered == asked, budget  # every result has its call, every call its results
        assert out[2]["role"] == "assistant" or len(out) == 2
        if dropped:
            assert "dropped" in out[1]["content"]


def test_a_layout_rebuilds_the_compacted_messages_and_refuses_others() -> None:
    msgs = native_steps(4)
    out, _ = clear_results(msgs, ClearToolResults(keep_last=1))
    layout = json.loads(json.dumps(layout_of(msgs, out)))  # as journaled
    assert apply_layout(msgs, layout, len(msgs)) == out
    with pytest.raises(JournalError, match="made of"):
        apply_layout(msgs[:-1], layout, len(msgs))


def test_configuration_errors_are_typed_and_name_the_fix() -> None:
    with pytest.raises(UnknownArgumentError, match="did you mean 'threshold'"):
        Compaction(treshold=0.5)  # type: ignore[call-arg]
    with pytest.raises(UserError, match="threshold"):
        Compaction(threshold=1.5)
    with pytest.raises(UserError, match="target"):
        Compaction(threshold=0.5, target=0.7)
    with pytest.raises(UserError, match="strategy"):
        Compaction(strategies=["summarize"])  # type: ignore[list-item]
    with pytest.raises(UserError, match="ModelClient"):
        Summarize(model=42)
    with pytest.raises(UserError, match="context must be"):
        Agent(context="on")  # type: ignore[arg-type]
    with pytest.raises(UnknownArgumentError, match="keep_last"):
        SlidingWindow(keep=3)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------- memory sessions
class TinyLocal(ScriptedModel):
    """Stands for the embedded model (provider "local", a small n_ctx): refuses what does not fit."""

    provider = "local"
    n_ctx = 1024


def test_a_150_turn_chat_on_a_small_window_keeps_answering_and_its_store_reopens(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    counted: list[int] = []

    def reply(messages: list[dict[str, Any]]) -> Any:
        n = len(json.dumps(messages)) // 4
        counted.append(n)
        if n > TinyLocal.n_ctx:
            return ModelContextTooLongError(f"{n} tokens do not fit {TinyLocal.n_ctx}")
        question = messages[-1]["content"]
        return Function(name="finish", kwargs={"answer": f"You said: {question}"})

    def chat(turns: range, session: str | None = None) -> tuple[str, list[Any]]:
        store = SQLiteMemoryStore(path)
        memory = ConversationMemory(store, session_id=session, max_turns=None)  # the whole session, every turn
        events: list[Any] = []
        runner = Runner(Agent(model=TinyLocal([reply], repeat_last=True)), conversation_memory=memory,
                        event_handlers=[events.append])
        for i in turns:
            result = runner.call(f"turn {i}: tell me something about the number {i}")
            assert result.status == "success", (i, result.error)
            assert result.answer.startswith(f"You said: turn {i}")
        store.close()
        return memory.session_id, events

    session, events = chat(range(150))  # a 150-turn session: the history passes the window many times over
    infos = [e.item.data for e in events if isinstance(e, RunItemStreamEvent) and e.name == COMPACTION]
    assert infos and all("sliding_window" in i.strategies for i in infos)
    assert any("turns of the chat history" in r for i in infos for r in i.replaced)
    assert max(counted) <= TinyLocal.n_ctx
    # reopened by another memory on the same file: the session goes on past the window
    _, more = chat(range(150, 160), session)
    store = SQLiteMemoryStore(path)
    assert len(ConversationMemory(store, session_id=session).turns) == 160
    store.close()
    assert any(isinstance(e, RunItemStreamEvent) and e.name == COMPACTION for e in more)
    assert SUMMARY_OPEN not in json.dumps(counted)


def test_the_cli_live_view_and_journal_listing_show_compactions(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                 ) -> None:
    import asyncio

    from treadle.cli._journal import show  # pyright: ignore[reportPrivateUsage]
    from treadle.cli._live import _run_live  # pyright: ignore[reportPrivateUsage]

    provider = Provider(40)
    runner = Runner(Agent(tools=[fetch], model=ScriptedModel([provider], repeat_last=True), max_steps=50,
                          context=Compaction(window=WINDOW)), store=f"sqlite:///{tmp_path / 'runs.db'}")
    result = asyncio.run(_run_live(runner, {"input_str": "Fetch pages 1 to 40."}, show=True))
    assert result.status == "success"
    live = capsys.readouterr().out
    assert "context compacted (threshold)" in live and "old tool results -> short stubs" in live
    show(result.run_id or "", store=f"sqlite:///{tmp_path / 'runs.db'}")
    listed = capsys.readouterr().out
    assert "context compacted (threshold) before step" in listed


def test_the_sliding_window_keeps_the_sessions_summary_whatever_it_says() -> None:
    """A summary that itself holds turn-like lines (a small model copies the transcript) stays whole."""
    from treadle.compaction import slide_history

    summary = "<SUMMARY_OF_EARLIER_TURNS>\nUser:\nquery: hi\nAssistant: hello\n</SUMMARY_OF_EARLIER_TURNS>"
    turns = "\n".join(f"User:\nquery: question {i}\nAssistant: answer {i}" for i in range(20))
    msgs = [{"role": "system", "content": f"Be brief.\n<CHAT_HISTORY>\n{summary}\n{turns}\n</CHAT_HISTORY>"},
            {"role": "user", "content": "next"}]
    out, dropped = slide_history(msgs, lambda ms: len(str(ms[0]["content"])) // 4, 120)
    assert dropped > 0 and summary in out[0]["content"]
    assert "question 19" in out[0]["content"] and "question 0\n" not in out[0]["content"]


def test_the_embedded_models_fixed_prefix_does_not_change_with_the_chat_history() -> None:
    """The chat history goes with the question, after the worked examples: the system prompt and the
    examples are the same whatever the history, so llama.cpp reuses their KV cache turn after turn."""
    from treadle.models.local import LocalModel
    from treadle.tools.builtin import DEMO_TOOLS

    model = LocalModel(n_ctx=2048, prefix_cache=None)  # (not loaded: the payload is built without the model)
    agent = Agent(tools=DEMO_TOOLS, model=model)
    bodies = []
    for history in ("User:\nquery: hi\nAssistant: hello", "User:\nquery: hi\nAssistant: hello\nUser:\nquery: 2+2\n"
                                                           "Assistant: 4"):
        messages = agent.planner.initial_messages("json", {"input_str": "What is 17 + 25?",
                                                           "chat_history_str": history}, "finish")
        request = agent.planner.build_request("json", messages, {}, "run", 0, "finish")
        body, fixed = model._payload(request)  # pyright: ignore[reportPrivateUsage]
        bodies.append((body["messages"], fixed))
    (first, fixed), (second, _) = bodies
    assert fixed > 1 and first[:fixed] == second[:fixed]
    assert "<CHAT_HISTORY>" not in first[0]["content"]
    assert "Assistant: 4" in second[fixed]["content"] and second[fixed]["content"].endswith("What is 17 + 25?")
