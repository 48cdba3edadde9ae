"""The treadle command, driven as a user would (real embedded model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import cut_journal
from treadle.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_HOME", str(tmp_path / "home"))  # the journal goes here, not in ~
    monkeypatch.setenv("TREADLE_MEMORY_DB", str(tmp_path / "home" / "memory.db"))


@pytest.mark.slow
def test_run_shows_steps_and_answer() -> None:
    out = runner.invoke(app, ["run", "What is 17 + 25?", "--max-steps", "3"])
    assert out.exit_code in (0, 1), out.output
    assert "call calculator(" in out.output and "step 1:" in out.output
    assert ("answer:" in out.output) or ("max_steps:" in out.output)


@pytest.mark.slow
def test_run_json_is_a_runner_result() -> None:
    out = runner.invoke(app, ["run", "What is 6 * 7?", "--json", "--max-steps", "3"])
    data = json.loads(out.stdout)
    assert data["status"] in ("success", "max_steps") and data["usage"]["requests"] >= 1
    assert data["step_history"][0]["function"]["name"] in ("calculator", "current_time", "read_file")


@pytest.mark.slow
def test_run_with_a_user_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mytools.py").write_text(
        "def shout(text: str) -> str:\n    '''Upper-case the text.'''\n    return text.upper()\n")
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["run", "Shout hello", "--tool", "mytools:shout", "--json", "--max-steps", "2"])
    data = json.loads(out.stdout)
    assert data["step_history"][0]["function"]["name"] == "shout"


def test_clear_errors() -> None:
    out = runner.invoke(app, ["run", "x", "--model", "nope"])
    assert out.exit_code == 2 and "unknown model string 'nope'" in out.output
    out = runner.invoke(app, ["run", "x", "--tool", "no_such_module:f"])
    assert out.exit_code == 2 and "cannot import 'no_such_module'" in out.output
    out = runner.invoke(app, ["run", "x", "--model", "openai:gpt-4o-mini"], env={"OPENAI_API_KEY": ""})
    assert out.exit_code == 2 and "OPENAI_API_KEY" in out.output


def test_models_lists_what_is_available() -> None:
    out = runner.invoke(app, ["models"])
    assert out.exit_code == 0
    assert "SmolLM2-135M-Instruct" in out.output and "OPENAI_API_KEY" in out.output and "local:/path" in out.output


@pytest.mark.slow
def test_chat_remembers_turns_across_sessions() -> None:
    out = runner.invoke(app, ["chat", "--max-steps", "2"], input="What is 2 + 3?\nWhat is 4 * 4?\nexit\n")
    assert out.exit_code == 0, out.output
    assert out.output.count("agent") >= 2
    session = out.output.split("session ", 1)[1].split()[0]
    from treadle.memory import SQLiteMemoryStore

    turns = SQLiteMemoryStore().load_turns(session, 10)
    assert [t.user_query.query_str for t in turns] == ["What is 2 + 3?", "What is 4 * 4?"]
    again = runner.invoke(app, ["chat", "--session", session, "--max-steps", "2"], input="What is 1 + 1?\nexit\n")
    assert again.exit_code == 0 and len(SQLiteMemoryStore().load_turns(session, 10)) == 3


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("treadle")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "run" in out.stdout and "chat" in out.stdout and "models" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("answer,ran", [("y", True), ("n", False), ("e\n{\"expression\": \"2 + 2\"}", True)])
def test_terminal_approval_prompt(answer: str, ran: bool) -> None:
    out = runner.invoke(app, ["run", "What is 17 + 25?", "--require-approval", "calculator", "--max-steps", "2"],
                        input=answer + "\n")
    assert "allow calculator(" in out.output, out.output
    if ran:
        assert "→ " in out.output and "cancelled by user" not in out.output
        if "2 + 2" in answer:
            assert "→ 4" in out.output
    else:
        assert "Tool execution cancelled by user: the user said no" in out.output


def test_approval_flags_are_checked() -> None:
    out = runner.invoke(app, ["run", "x", "--require-approval", "nope"])
    assert out.exit_code == 2 and "unknown tools: nope" in out.output
    out = runner.invoke(app, ["run", "x", "--require-approval", "calculator", "--json"])
    assert out.exit_code == 2 and "--yes" in out.output


@pytest.mark.slow
def test_runs_are_journaled_listed_shown_and_resumed(tmp_path: Path) -> None:
    out = runner.invoke(app, ["run", "What is 6 * 7?", "--json", "--max-steps", "3"])
    run_id = json.loads(out.stdout)["run_id"]
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and run_id in listed.output and "What is 6 * 7?" in listed.output
    shown = runner.invoke(app, ["show", run_id])
    assert shown.exit_code == 0 and "step 1: calculator(" in shown.output and "tokens" in shown.output
    again = runner.invoke(app, ["resume", run_id])
    assert again.exit_code == 0 and "42" in again.output  # ended: its recorded result, nothing runs
    # make it unfinished, as if the process had died after the tool call started
    from treadle.store import SQLiteRunStore, default_store_path

    store = SQLiteRunStore(default_store_path())
    start = min(e.seq for e in store.events(run_id) if e.name == "agent.tool_call_start")
    cut_journal(store, run_id, lambda e: e.seq <= start)
    resumed = runner.invoke(app, ["resume", run_id, "--json"])
    data = json.loads(resumed.stdout)
    assert data["run_id"] == run_id and data["status"] in ("success", "max_steps")
    assert "interrupted" in data["step_history"][0]["observation"]
    assert runner.invoke(app, ["show", "nope"]).exit_code == 2
    nostore = runner.invoke(app, ["run", "What is 1 + 1?", "--no-store", "--json", "--max-steps", "2"])
    assert json.loads(nostore.stdout)["run_id"] not in runner.invoke(app, ["runs"]).output


@pytest.mark.slow
def test_suspend_approve_and_resume_from_the_command_line() -> None:
    out = runner.invoke(app, ["run", "What is 17 + 25?", "--require-approval", "calculator", "--suspend",
                              "--max-steps", "3"])
    assert out.exit_code == 1 and "suspended:" in out.output, out.output
    run_id = out.output.split("treadle resume ")[1].split()[0]
    call_id = out.output.split("waiting for approval: calculator(")[1].split("call ")[1].split()[0]
    bad = runner.invoke(app, ["approve", run_id, "not-a-call"])
    assert bad.exit_code == 2 and "not waiting" in bad.output
    ok = runner.invoke(app, ["approve", run_id, call_id, "--args", '{"expression": "40 + 2"}'])
    assert ok.exit_code == 0 and "recorded" in ok.output
    done = runner.invoke(app, ["resume", run_id, "--json"])
    data = json.loads(done.stdout)
    assert data["step_history"][0]["observation"] == "42" and data["status"] in ("success", "max_steps")


@pytest.mark.slow
def test_replay_and_fork_from_the_command_line() -> None:
    out = runner.invoke(app, ["run", "What is 17 + 25?", "--json", "--max-steps", "3"])
    run_id = json.loads(out.stdout)["run_id"]
    same = runner.invoke(app, ["replay", run_id])
    assert same.exit_code == 0 and "same" in same.output, same.output
    forked = runner.invoke(app, ["fork", run_id, "--at-step", "2", "--json"])
    data = json.loads(forked.stdout)
    assert data["run_id"] != run_id and data["step_history"][0]["observation"] == "42"
    assert runner.invoke(app, ["replay", "nope"]).exit_code == 2


def test_store_urls_and_the_postgres_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--store takes a SQLite file or a store URL; a PostgreSQL URL without psycopg names the extra."""
    db = tmp_path / "urls.db"
    out = runner.invoke(app, ["runs", "--store", f"sqlite:///{db}"])
    assert out.exit_code == 0 and db.exists(), out.output
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as after the base install
    for command in (["runs"], ["show", "some-run"], ["approve", "some-run", "some-call"]):
        out = runner.invoke(app, [*command, "--store", "postgresql://u@127.0.0.1:1/x"])
        assert out.exit_code == 2 and "pip install 'treadle[postgres]'" in out.output, (command, out.output)
    out = runner.invoke(app, ["runs", "--store", "mysql://x"])
    assert out.exit_code == 2 and "unknown store" in out.output
    assert not (Path.cwd() / "postgresql:").exists()  # not taken for a SQLite path
