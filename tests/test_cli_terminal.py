"""The treadle command as a person at a terminal meets it: text shown as typed, honest step
times, fork's step range, line editing in chat, approvals checked and explained. Scripted
models stand in for the CLI's model strings (no embedded model needed)."""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from treadle import Function, Runner, ScriptedModel
from treadle.cli import app

runner = CliRunner()

TOOLS = '''
import time


def slow_double(x: int) -> int:
    """Double a number, slowly.

    Args:
        x: the number
    """
    time.sleep(0.3)
    return 2 * x
'''


def planner(messages: list[Any]) -> Any:
    """Calls slow_double on the user's question, then answers with the observation (the
    question and the answer carry square brackets, which must be shown as they are)."""
    last = str(messages[-1]["content"])
    if last.startswith("Observation:"):
        return Function(name="finish", kwargs={"answer": f"[red]{last.split(':', 1)[1].strip()}[/red] [b]"})
    return Function(name="slow_double", kwargs={"x": 21}, thought="double it [now]")


@pytest.fixture(autouse=True)
def _scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.cli import _common

    monkeypatch.setenv("TREADLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TREADLE_MEMORY_DB", str(tmp_path / "home" / "memory.db"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t27tools.py").write_text(TOOLS)
    monkeypatch.setattr(_common, "resolve_model", lambda spec: ScriptedModel([planner], repeat_last=True, delay=0.2,
                                                                               name="scripted"))


def cli(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, [*args], input=input)


RUN = ("run", "What is [b]21[/b] doubled?", "--tool", "t27tools:slow_double")


# ---------------------------------------------------------------------- 1. square brackets
def test_help_and_output_show_square_brackets_as_typed() -> None:
    out = cli("run", "--help")
    text = " ".join(out.output.split())  # help is wrapped to the terminal
    assert "treadle[mcp]" in text and "treadle[postgres]" in text and "[[mcp]]" in text, out.output
    out = cli("serve", "--help")
    assert "treadle[mcp]" in " ".join(out.output.split())

    out = cli(*RUN, "--require-approval", "slow_double", input="y\n")
    assert out.exit_code == 0, out.output
    assert 'allow slow_double({"x": 21})? [y]es / [n]o / [a]lways / [e]dit:' in out.output
    assert "What is [b]21[/b] doubled?" in out.output  # the question
    assert "thought: double it [now]" in out.output  # the model's words
    assert "answer: [red]42[/red] [b]" in out.output  # the answer


# ---------------------------------------------------------------------- 2. step times
def test_live_step_times_are_the_steps_own() -> None:
    out = cli(*RUN, "--no-store")
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if "step 1:" in x)
    took, tool_ms = float(line.split("step 1: ")[1].split(" s")[0]), int(line.split("(tool ")[1].split(" ms")[0])
    assert took >= 0.45, line  # the model's 0.2 s and the tool's 0.3 s
    assert 250 <= tool_ms < 2000, line


# ---------------------------------------------------------------------- 3. fork's range
def test_fork_refuses_a_step_out_of_range_naming_the_range() -> None:
    out = cli(*RUN, "--json")
    run_id = json.loads(out.stdout)["run_id"]
    for bad in ("0", "3", "-1"):
        out = cli("fork", run_id, "--at-step", bad, "--json")
        assert out.exit_code == 2 and "between 1 and 2" in out.output, (bad, out.output)
    from treadle.store import SQLiteRunStore, default_store_path

    journal = SQLiteRunStore(default_store_path())
    assert journal.get_run(run_id) is not None and len(journal.list_runs(limit=10)) == 1  # no fork was made
    out = cli("fork", run_id, "--at-step", "2", "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["step_history"][0]["observation"] == 42
    # the library counts from 0: 0..1 here
    from treadle.errors import UserError

    lib = Runner(scripted_cli_agent(), store=journal)
    for bad_step in (-1, 2):
        with pytest.raises(UserError, match="between 0 and 1"):
            lib.fork(run_id, bad_step)


def scripted_cli_agent() -> Any:  # an Agent like the CLI's, on the scripted model
    from treadle.cli import build_agent

    return build_agent("scripted", ["t27tools:slow_double"], 6)


# ---------------------------------------------------------------------- 4. line editing
CHAT = '''
import sys
from treadle import Function, ScriptedModel
from treadle.cli import _common, main

_common.resolve_model = lambda spec: ScriptedModel(
    [lambda messages: Function(name="finish", kwargs={"answer": "noted"})], repeat_last=True, name="scripted")
sys.argv = ["treadle", "chat", "--no-store", "--session", "pty-session"]
main()
'''


@pytest.mark.skipif(sys.platform == "win32", reason="a pty and readline: POSIX")
def test_chat_has_line_editing_and_history(tmp_path: Path) -> None:
    """In a real terminal (a pty): ← moves the cursor, ↑ brings the last line back."""
    import pty

    pytest.importorskip("readline")

    (tmp_path / "chat_main.py").write_text(CHAT)
    env = {**os.environ, "TERM": "xterm", "PYTHONPATH": os.pathsep.join(sys.path)}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(tmp_path / "chat_main.py")], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=tmp_path, close_fds=True)
    os.close(slave)
    seen = b""
    poller = select.poll()  # not select.select: a process with many files open has fds past FD_SETSIZE
    poller.register(master, select.POLLIN)

    def until(text: bytes, count: int, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(text) < count:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if poller.poll(200):
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break

    try:
        until(b"you>", 1)
        os.write(master, b"abc\x1b[D\x1b[DX\r")  # a b c ← ← X  →  aXbc
        until(b"noted", 1)
        until(b"you>", 2)
        os.write(master, b"\x1b[A!\r")  # ↑ (aXbc) then !  →  aXbc!
        until(b"noted", 2)
        until(b"you>", 3)
        os.write(master, b"exit\r")
        proc.wait(30)
    finally:
        proc.kill()
        os.close(master)
    from treadle.memory import SQLiteMemoryStore

    turns = SQLiteMemoryStore(os.environ["TREADLE_MEMORY_DB"]).load_turns("pty-session", 10)
    assert [t.user_query.query_str for t in turns] == ["aXbc", "aXbc!"], seen.decode(errors="replace")


# ---------------------------------------------------------------------- 5. approvals
def test_an_edit_at_the_prompt_is_checked_before_it_is_given() -> None:
    """Arguments that do not fit the tool are refused at the prompt and the call is asked
    again (they used to be given, and the run turned them into a denial)."""
    out = cli(*RUN, "--require-approval", "slow_double", input='e\n{"x": "lots"}\ne\nnot json\ne\n{"x": 5}\n')
    assert out.exit_code == 0, out.output
    assert "refused: the edited arguments are not valid for slow_double" in out.output
    assert "refused: not JSON" in out.output
    assert out.output.count("allow slow_double(") == 3
    assert "→ 10" in out.output and "cancelled by user" not in out.output


def suspended() -> tuple[str, str, str]:
    """A run suspended for approval: (its id, the waiting call's id, what the CLI printed)."""
    out = cli(*RUN, "--require-approval", "slow_double", "--suspend")
    assert out.exit_code == 1 and "suspended:" in out.output, out.output
    from treadle.store import SQLiteRunStore, default_store_path

    journal = SQLiteRunStore(default_store_path())
    run_id = journal.list_runs(limit=1)[0].run_id
    [call_id] = [e.payload["item"]["id"] for e in journal.events(run_id) if e.name == "agent.tool_permission_request"]
    return run_id, call_id, out.output


def test_suspend_shows_the_call_and_the_commands_to_paste() -> None:
    run_id, call_id, output = suspended()
    assert "CALL_ID" not in output
    assert f'slow_double({{"x": 21}})  call {call_id}' in output  # the tool, its arguments, the real id
    shown = cli("show", run_id)
    assert f'waiting for approval: slow_double({{"x": 21}}), call {call_id}' in shown.output, shown.output
    commands = [line[line.index("treadle "):] for line in output.splitlines() if ":" in line and "treadle " in line]
    approve = next(c for c in commands if c.startswith("treadle approve") and "--args" not in c)
    edit = next(c for c in commands if c.startswith("treadle approve") and "--args" in c)
    deny = next(c for c in commands if c.startswith("treadle deny"))
    resume = next(c for c in commands if c.startswith("treadle resume")).split("treadle resume ", 1)[1]
    assert approve == f"treadle approve {run_id} {call_id}" and deny.startswith(f"treadle deny {run_id} {call_id}")
    assert shlex.split(edit)[-1] == '{"x": 21}'
    done = cli(*shlex.split(approve)[1:])  # pasted as printed
    assert done.exit_code == 0, done.output
    again = cli("resume", *shlex.split(resume), "--json")
    assert json.loads(again.stdout)["step_history"][0]["observation"] == 42


def test_approve_args_that_do_not_fit_are_refused_and_the_call_stays_pending() -> None:
    run_id, call_id, _ = suspended()
    out = cli("approve", run_id, call_id, "--args", '{"x": "lots"}')
    assert out.exit_code == 2 and "not valid for slow_double" in out.output, out.output
    from treadle._edits import InvalidEdit
    from treadle.store import SQLiteRunStore, default_store_path

    journal = SQLiteRunStore(default_store_path())
    assert not [e for e in journal.events(run_id) if e.name == "treadle.approval_decision"]
    lib = Runner(scripted_cli_agent(), store=journal)  # the library refuses it the same way
    with pytest.raises(InvalidEdit, match="not valid for slow_double"):
        lib.record_decision(run_id, call_id, approve=True, kwargs={"x": "lots"})
    assert not [e for e in journal.events(run_id) if e.name == "treadle.approval_decision"]
    out = cli("approve", run_id, call_id, "--args", '{"x": 4}')
    assert out.exit_code == 0, out.output
    done = cli("resume", run_id, "--json")
    assert json.loads(done.stdout)["step_history"][0]["observation"] == 8
