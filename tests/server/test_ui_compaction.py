"""A context compaction in the web UI (Debian's Chromium driven by Playwright): a journaled run
that compacted its context shows each compaction in its timeline (tokens before and after, what
was replaced), and as a span in its trace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from server_utils import serving
from test_ui_browser import browser, page, tid  # noqa: F401  (fixtures)

from treadle import Agent, Compaction, Function, Runner, ScriptedModel
from treadle.compaction import SUMMARY_INSTRUCTIONS

pytestmark = pytest.mark.timeout(120)


def fetch(number: int) -> str:
    """Fetch a page."""
    return f"page {number}: " + "lorem ipsum dolor sit amet " * 25 + "ok"


def script(messages: list[dict[str, Any]]) -> Any:
    if messages[0]["content"] == SUMMARY_INSTRUCTIONS:
        return "Pages fetched so far: all ok."
    pages = [int(p) for m in messages if m["role"] == "assistant"
             for p in re.findall(r'"number": ?(\d+)', m["content"])]
    nxt = max(pages, default=0) + 1
    return Function(name="fetch", kwargs={"number": nxt}) if nxt <= 30 else Function(name="finish",
                                                                                   kwargs={"answer": "done"})


def test_the_timeline_and_the_trace_show_the_compactions(page: Any, tmp_path: Path) -> None:  # noqa: F811
    from treadle.server import create_app

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    agent = Agent("fetcher", tools=[fetch], model=ScriptedModel([script], repeat_last=True), max_steps=40,
                  context=Compaction(window=2048))
    result = Runner(agent, store=url).call("Fetch pages 1 to 30.")
    assert result.status == "success"
    with serving(create_app(agent, store=url)) as server:
        page.goto(f"{server}/#/runs/{result.run_id}")
        page.wait_for_selector(tid("final-answer"))
        notes = page.query_selector_all(tid("compaction-note"))
        assert notes, page.inner_text(tid("timeline"))
        text = notes[0].inner_text()
        assert "context compacted" in text and "tokens" in text and "of 2048" in text, text
        assert "->" in text or "stubs" in text or "summary" in text, text
        page.click(tid("trace-tab"))
        page.wait_for_selector(tid("trace-row"))
        rows = page.eval_on_selector_all(tid("trace-row"), "rs => rs.map(r => r.innerText)")
        assert any("compaction" in r for r in rows), rows
