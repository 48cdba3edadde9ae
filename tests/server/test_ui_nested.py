"""Nested runs in the web UI (Debian's Chromium driven by Playwright): a journaled run whose
tool call ran a child run (which ran its own), a handoff and a guardrail decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_utils import serving
from test_ui_browser import browser, page, shot, tid  # noqa: F401  (fixtures)

from nested_runs import agents, nested_run

pytestmark = pytest.mark.timeout(120)


def test_expand_a_child_run_and_see_it_in_the_trace(page: Any, tmp_path: Path) -> None:  # noqa: F811
    from treadle.server import create_app

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    writer, calc, doubler = nested_run(url)
    with serving(create_app(agents(), store=url)) as server:
        page.goto(server + "/")
        page.wait_for_selector(tid("run-row"))
        rows = page.query_selector_all(tid("run-row"))
        assert len(rows) == 1 and "(2+3)" in rows[0].inner_text()  # the child runs are not listed

        page.goto(f"{server}/#/runs/{writer}")
        page.wait_for_selector(tid("final-answer"))
        timeline = page.inner_text(tid("timeline"))
        assert "handed to editor" in timeline and "polish" in timeline
        assert "guardrail polite" in timeline and "passed" in timeline
        assert page.inner_text(f"{tid('final-answer')} {tid('answer-agent')}") == "editor"  # who answered
        toggle = page.wait_for_selector(f"[data-call-id='q1'] {tid('child-toggle')}")
        assert "calculator" in toggle.inner_text()
        assert not page.is_visible(f"{tid('child-run')}[data-run-id='{calc}']")
        toggle.click()
        box = f"{tid('child-run')}[data-run-id='{calc}']"
        page.wait_for_selector(f"{box} {tid('child-step')}")
        steps = page.query_selector_all(f"{box} > ol > {tid('child-step')}")
        assert len(steps) == 2, [s.inner_text() for s in steps]
        assert "add" in steps[0].inner_text() and "doubler" in steps[1].inner_text()
        assert "10" in page.inner_text(f"{box} > {tid('child-answer')}")
        # the grandchild, under the calculator's second step
        steps[1].query_selector(tid("child-toggle")).click()
        inner = f"{tid('child-run')}[data-run-id='{doubler}']"
        page.wait_for_selector(f"{inner} {tid('child-step')}")
        assert "double" in page.inner_text(f"{inner} {tid('child-step')}")
        shot(page, "20-nested-timeline")
        # folding it again hides it
        toggle.click()
        assert not page.is_visible(box)

        page.click(tid("trace-tab"))
        page.wait_for_selector(f"{tid('trace-row')}[data-span-id='{calc}']")
        order = page.eval_on_selector_all(tid("trace-row"), "rs => rs.map(r => [r.dataset.spanId, +r.dataset.depth])")
        ids = [sid for sid, _ in order]
        depth = dict(order)
        tool, child, grand = ids.index(f"{writer}:tool:q1"), ids.index(calc), ids.index(doubler)
        assert tool < child < grand  # drawn under the tool call that ran it
        assert depth[calc] == depth[f"{writer}:tool:q1"] + 1
        assert depth[doubler] == depth[f"{calc}:tool:c2"] + 1 and depth[doubler] > depth[calc]
        text = page.inner_text(tid("trace-view"))
        assert "agent calculator" in text and "agent doubler" in text and "handoff → editor" in text
        assert "guardrail polite" in text
        shot(page, "21-nested-trace")
        assert not page.console_errors, page.console_errors


def test_an_inner_agents_call_is_approved_in_the_outer_runs_view(page: Any, tmp_path: Path) -> None:  # noqa: F811
    """The same human decides for an inner agent: the approval card shows in the run the user
    started, and approving it lets the inner run and then the outer run finish."""
    from test_ui_browser import delete_file

    from treadle import Agent, Function, ScriptedModel
    from treadle.server import create_app

    janitor = Agent("janitor", tools=[delete_file], model=ScriptedModel(
        [Function(id="d1", name="delete_file", kwargs={"path": "old.log"}),
         Function(name="finish", kwargs={"answer": "old.log is gone"})], per_run=True))
    boss = Agent("boss", tools=[janitor.as_tool()], model=ScriptedModel(
        [Function(id="b1", name="janitor", kwargs={"input": "delete old.log"}),
         Function(name="finish", kwargs={"answer": "Cleaned up."})], per_run=True))
    with serving(create_app({"boss": boss}, store=f"sqlite:///{tmp_path / 'runs.db'}")) as server:
        page.goto(server + "/")
        page.fill(tid("new-run-input"), "Clean up the logs")
        page.click(tid("new-run-submit"))
        card = page.wait_for_selector(tid("approval-card"))
        assert "delete_file" in card.inner_text() and "old.log" in card.inner_text()
        shot(page, "22-nested-approval")
        page.click(tid("approve-btn"))
        answer = page.wait_for_selector(tid("final-answer"))
        assert "Cleaned up." in answer.inner_text()
        toggle = page.wait_for_selector(f"[data-call-id='b1'] {tid('child-toggle')}")
        toggle.click()
        page.wait_for_selector(f"{tid('child-run')} {tid('child-step')}")
        assert "deleted old.log" in page.inner_text(tid("child-run"))
        assert not page.console_errors, page.console_errors


def test_cancel_a_live_nested_run_from_the_ui(page: Any, tmp_path: Path) -> None:  # noqa: F811
    """The outer run is cancelled (its Cancel button) while its inner agent's tool works: both
    runs end cancelled, and the call's child run shows it."""
    import time

    from treadle import Agent, Function, ScriptedModel, tool
    from treadle.server import create_app
    from treadle.store import SQLiteRunStore
    from treadle.types import child_run_id

    @tool
    async def excavate(site: str) -> str:
        """Dig for a long time.

        Args:
            site: where
        """
        import asyncio

        await asyncio.sleep(60)
        return "found"

    digger = Agent("digger", tools=[excavate], model=ScriptedModel(
        [Function(id="g1", name="excavate", kwargs={"site": "x"}), Function(name="finish", kwargs={"answer": "?"})],
        per_run=True))
    boss = Agent("boss", tools=[digger.as_tool()], model=ScriptedModel(
        [Function(id="b1", name="digger", kwargs={"input": "dig at x"}),
         Function(name="finish", kwargs={"answer": "?"})], per_run=True))
    db = tmp_path / "runs.db"
    with serving(create_app({"boss": boss}, store=f"sqlite:///{db}")) as server:
        page.goto(server + "/")
        page.fill(tid("new-run-input"), "Dig at x")
        page.click(tid("new-run-submit"))
        page.wait_for_function("location.hash.startsWith('#/runs/')")
        run_id = page.evaluate("location.hash").split("/")[-1]
        child = child_run_id(run_id, "0:b1")
        page.wait_for_function("document.querySelector(\"[data-testid='timeline']\").innerText.includes('digger')")
        store = SQLiteRunStore(str(db))
        try:
            deadline = time.monotonic() + 30  # until the inner agent's tool is running
            while not any(e.name == "agent.tool_call_start" for e in store.events(child)):
                assert time.monotonic() < deadline, "the inner agent's tool never started"
                time.sleep(0.05)
            page.click(tid("cancel-btn"))
            page.wait_for_function("document.querySelector(\"[data-testid='run-status']\").innerText"
                                   ".toLowerCase().includes('cancel')")
            deadline = time.monotonic() + 30
            while store.get_run(child).status != "cancelled":
                assert time.monotonic() < deadline, store.get_run(child)
                time.sleep(0.05)
            assert store.get_run(run_id).status == "cancelled"
        finally:
            store.close()
        toggle = page.wait_for_selector(f"[data-call-id='b1'] {tid('child-toggle')}")
        page.wait_for_function("document.querySelector(\"[data-call-id='b1'] [data-testid='child-toggle']\")"
                               ".innerText.includes('cancelled')")
        assert "digger" in toggle.inner_text()
        toggle.click()
        box = f"{tid('child-run')}[data-run-id='{child}']"
        page.wait_for_selector(f"{box} .child-head")
        assert "cancelled" in page.inner_text(box).lower()
        shot(page, "23-nested-cancelled")
        assert not page.console_errors, page.console_errors
