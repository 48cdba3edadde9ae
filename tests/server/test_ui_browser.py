"""The web UI end to end in a real browser: Debian's Chromium driven by Playwright.

Screenshots go to ``test-artifacts/ui/`` (look at them: the page must look finished)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from scripted_agents import delete_file
from server_utils import serving

from treadle import Agent, Function, RunContext, tool
from treadle.models.scripted import ScriptedModel
from treadle.server.mcp_app import ask_host
from treadle.tools.builtin import calculator

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


def chromium_path() -> str:
    path = os.environ.get("TREADLE_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        why = "Debian's chromium is not installed (bash .ci/chromium.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@tool
async def slow_lookup(key: str) -> str:
    """Look a key up in a slow archive.

    Args:
        key: what to look up
    """
    for _ in range(300):
        await asyncio.sleep(0.1)
    return f"value of {key}"


def ui_model() -> ScriptedModel:
    """Plans from the user's words: "delete" → delete_file (needs approval), "archive" →
    slow_lookup, else calculator; then answers with the observation."""

    def reply(messages: list[Any]) -> Any:
        text = str(messages[1]["content"]).lower()
        last = str(messages[-1]["content"])
        if last.startswith("Observation:"):
            return Function(name="finish", kwargs={"answer": f"Done: {last.split(':', 1)[1].strip()}"},
                            thought="I have what I need.")
        if "delete" in text:
            return Function(name="delete_file", kwargs={"path": "notes.txt"}, thought="The user wants it gone.")
        if "archive" in text:
            return Function(name="slow_lookup", kwargs={"key": "2019"}, thought="Look in the archive.")
        return Function(name="calculator", kwargs={"expression": "17 + 25"}, thought="Add the two numbers.")

    return ScriptedModel([reply], repeat_last=True, delay=0.3, name="scripted-demo")


def make_agent() -> Agent[Any]:
    return Agent(name="assistant", tools=[calculator, delete_file, slow_lookup], model=ui_model(), max_steps=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    yield pg
    context.close()


def shot(pg: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def tid(name: str) -> str:
    return f"[data-testid='{name}']"


def test_start_approve_answer_trace_and_cancel(page: Any, tmp_path: Path) -> None:
    from treadle.server import create_app

    app = create_app({"assistant": make_agent()}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as url:
        page.goto(url + "/")
        page.wait_for_selector(tid("new-run-input"))
        shot(page, "01-empty")

        # a run whose tool call needs approval
        page.fill(tid("new-run-input"), "Please delete notes.txt")
        page.click(tid("new-run-submit"))
        card = page.wait_for_selector(tid("approval-card"))
        assert "delete_file" in card.inner_text() and "notes.txt" in card.inner_text()
        assert "waiting" in page.inner_text(tid("run-status")).lower()
        shot(page, "02-approval")
        page.click(tid("approve-btn"))
        answer = page.wait_for_selector(tid("final-answer"))
        assert "Done: deleted notes.txt" in answer.inner_text()
        page.wait_for_function("document.querySelector(\"[data-testid='run-status']\").innerText"
                               ".toLowerCase().includes('success')")
        steps = page.query_selector_all(tid("step-card"))
        assert len(steps) >= 1 and "delete_file" in steps[0].inner_text()
        assert "The user wants it gone." in page.inner_text(tid("timeline"))
        shot(page, "03-answer")

        # its trace: run, steps, model calls, the approval and the tool as a waterfall
        page.click(tid("trace-tab"))
        page.wait_for_selector(tid("trace-row"))
        rows = page.query_selector_all(tid("trace-row"))
        text = page.inner_text(tid("trace-view"))
        assert len(rows) >= 6, text
        for label in ("run", "model", "approval", "delete_file"):
            assert label in text, text
        shot(page, "04-trace")

        # a run that is cancelled while its tool works
        page.goto(url + "/#/")
        page.fill(tid("new-run-input"), "Find the 2019 figure in the archive")
        page.click(tid("new-run-submit"))
        page.wait_for_selector(tid("step-card") + ", " + tid("cancel-btn"))
        page.wait_for_function("document.querySelector(\"[data-testid='timeline']\").innerText.includes('slow_lookup')")
        page.click(tid("cancel-btn"))
        page.wait_for_function("document.querySelector(\"[data-testid='run-status']\").innerText"
                               ".toLowerCase().includes('cancel')")
        shot(page, "05-cancelled")

        # the runs list shows both, newest first
        page.goto(url + "/#/")
        page.wait_for_function("document.querySelectorAll(\"[data-testid='run-row']\").length >= 2")
        rows = page.query_selector_all(tid("run-row"))
        first, second = rows[0].inner_text().lower(), rows[1].inner_text().lower()
        assert "cancel" in first and "archive" in first
        assert "success" in second and "delete" in second
        shot(page, "06-runs")
        assert not page.console_errors, page.console_errors


def test_chat_session_on_a_phone(browser: Any, tmp_path: Path) -> None:
    from treadle.server import create_app

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    app = create_app({"assistant": make_agent()}, store=f"sqlite:///{tmp_path / 'runs.db'}",
                     memory_store=_memory(tmp_path))
    try:
        with serving(app) as url:
            page.goto(url + "/")
            page.fill(tid("new-run-input"), "What is 17 + 25?")
            page.fill(tid("new-run-session"), "phone-chat")
            page.click(tid("new-run-submit"))
            assert "Done: 42" in page.wait_for_selector(tid("final-answer")).inner_text()
            shot(page, "07-phone-answer")
            # continue the session from the run page
            page.fill(tid("continue-input"), "And again?")
            page.click(tid("continue-submit"))
            page.wait_for_function("location.hash.includes('/runs/')")
            page.wait_for_selector(tid("final-answer"))
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 400, f"the page scrolls sideways on a phone ({width} px)"
            shot(page, "08-phone-continued")
            runs = app.state.hub.store.list_runs()
            assert len(runs) == 2 and {r.config["server"]["session_id"] for r in runs} == {"phone-chat"}
        assert not errors, errors
    finally:
        context.close()


def _memory(tmp_path: Path) -> Any:
    from treadle.memory import SQLiteMemoryStore

    return SQLiteMemoryStore(tmp_path / "memory.db")


def test_token_sign_in(page: Any, tmp_path: Path) -> None:
    from treadle.server import create_app

    app = create_app({"assistant": make_agent()}, store=f"sqlite:///{tmp_path / 'runs.db'}", token="tok-123")
    with serving(app) as url:
        response = page.goto(url + "/")
        assert response.status == 401
        page.fill(tid("login-token"), "wrong")
        page.click(tid("login-submit"))
        page.wait_for_selector("text=Wrong token")
        shot(page, "09-sign-in")
        # the printed address carries the token in the fragment, which the browser never sends
        page.goto(url + "/#token=tok-123")
        page.wait_for_selector(tid("new-run-input"))
        assert "tok-123" not in page.url
        page.fill(tid("new-run-input"), "What is 17 + 25?")
        page.click(tid("new-run-submit"))
        assert "Done: 42" in page.wait_for_selector(tid("final-answer")).inner_text()


def test_edit_with_bad_arguments_then_good_ones_and_deny(page: Any, tmp_path: Path) -> None:
    from treadle.server import create_app

    app = create_app({"assistant": make_agent()}, store=f"sqlite:///{tmp_path / 'runs.db'}")
    with serving(app) as url:
        page.goto(url + "/")
        page.fill(tid("new-run-input"), "Please delete notes.txt")
        page.click(tid("new-run-submit"))
        page.wait_for_selector(tid("approval-card"))
        page.click(tid("edit-btn"))
        page.fill(tid("edit-args"), '{"path": 12}')  # fails the tool's schema: refused, still pending
        page.click(tid("edit-save"))
        error = page.wait_for_selector(f"{tid('approval-card')} [role='alert']:not([hidden])")
        assert "not valid" in error.inner_text()
        shot(page, "10-edit-refused")
        page.fill(tid("edit-args"), '{"path": "old-notes.txt"}')
        page.click(tid("edit-save"))
        assert "Done: deleted old-notes.txt" in page.wait_for_selector(tid("final-answer")).inner_text()

        page.goto(url + "/#/")
        page.fill(tid("new-run-input"), "Please delete everything")
        page.click(tid("new-run-submit"))
        page.wait_for_selector(tid("approval-card"))
        page.fill(tid("deny-reason"), "not today")
        page.click(tid("deny-btn"))
        answer = page.wait_for_selector(tid("final-answer")).inner_text()
        assert "not today" in answer  # the model saw the reason (it echoes its observation)
        assert "deleted" not in answer
        shot(page, "11-denied")


def test_decisions_are_offered_only_where_this_server_can_continue_the_run(page: Any, tmp_path: Path) -> None:
    """A run suspended by an agent this server does not serve shows its call, no buttons and
    why; a suspended run of a served agent (a restart) is decided with a click."""
    from treadle import Runner
    from treadle.server import create_app

    store = f"sqlite:///{tmp_path / 'runs.db'}"
    janitor = Agent(name="janitor", tools=[delete_file], model=ScriptedModel(
        [Function(name="delete_file", kwargs={"path": "a.txt"}), Function(name="finish", kwargs={"answer": "done"})],
        per_run=True))
    other = Runner(janitor, store=store, suspend_for_approval=True).call("clean")
    mine = Runner(make_agent(), store=store, suspend_for_approval=True,
                  run_metadata={"server": {"agent": "assistant", "session_id": None}}).call("Please delete notes.txt")
    assert other.status == mine.status == "waiting_for_approval"
    with serving(create_app({"assistant": make_agent()}, store=store)) as url:
        page.goto(f"{url}/#/runs/{other.run_id}")
        page.wait_for_selector(tid("approval-card"))
        note = page.wait_for_selector(tid("approval-locked"))
        assert "cannot decide" in note.inner_text() and "janitor" in note.inner_text()
        assert not page.is_visible(tid("approve-btn")) and not page.is_visible(tid("deny-btn"))
        assert "a.txt" in page.inner_text(tid("approval-card"))  # the call is still shown
        shot(page, "12-cannot-decide")

        page.goto(f"{url}/#/runs/{mine.run_id}")
        page.wait_for_selector(f"{tid('approval-card')}[data-call-id]")
        assert not page.is_visible(tid("approval-locked"))
        page.click(tid("approve-btn"))
        assert "Done: deleted notes.txt" in page.wait_for_selector(tid("final-answer")).inner_text()
        assert not page.console_errors, page.console_errors


@tool
async def order_shirt(ctx: RunContext[object]) -> str:
    """Order a shirt, asking the user for the details."""
    answer = await ask_host(ctx, "Which shirt should I order?", {
        "type": "object", "required": ["name", "size"],
        "properties": {"name": {"type": "string", "title": "Name on the shirt"},
                       "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"},
                                                            {"const": "l", "title": "Large"}]},
                       "gift": {"type": "boolean", "title": "Gift wrap", "default": False},
                       "count": {"type": "integer", "default": 1}}})
    return f"{answer.action}: {json.dumps(answer.content, sort_keys=True)}"



def test_a_question_a_tool_asks_is_a_form(page: Any, tmp_path: Path) -> None:
    """A tool's question (an MCP elicitation, or a served tool's ask_host) shows its text and a
    form from its schema; the answer continues the call."""
    from treadle.server import create_app

    def reply(messages: list[Any]) -> Any:
        last = str(messages[-1]["content"])
        if last.startswith("Observation:"):
            return Function(name="finish", kwargs={"answer": last.split(":", 1)[1].strip()})
        return Function(name="order_shirt", kwargs={})

    agent = Agent(name="shop", tools=[order_shirt], model=ScriptedModel([reply], repeat_last=True), max_steps=3)
    with serving(create_app({"shop": agent}, store=f"sqlite:///{tmp_path / 'runs.db'}")) as url:
        page.goto(url + "/")
        page.fill(tid("new-run-input"), "Order me a shirt")
        page.click(tid("new-run-submit"))
        card = page.wait_for_selector(tid("question-form"))
        assert page.inner_text(tid("question-text")) == "Which shirt should I order?"
        assert "Name on the shirt *" in card.inner_text() and "Gift wrap" in card.inner_text()
        page.fill(tid("question-field-name"), "Ada")
        page.select_option(tid("question-field-size"), "l")
        page.check(tid("question-field-gift"))
        page.fill(tid("question-field-count"), "2")
        shot(page, "07-question")
        page.click(tid("answer-btn"))
        answer = page.wait_for_selector(tid("final-answer"))
        assert 'accept: {"count": 2, "gift": true, "name": "Ada", "size": "l"}' in answer.inner_text()
        assert not page.console_errors, page.console_errors
