"""`treadle show` and `treadle runs` with nested runs: child runs (an agent called as a tool,
an agent used as a guardrail) in a real SQLite journal, scripted models."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nested_runs import final, nested_run
from treadle import Agent, Function, Runner, ScriptedModel
from treadle.cli import app
from treadle.guardrails import output_guardrail
from treadle.types import child_run_id

runner = CliRunner()


def test_show_nests_child_runs_under_their_step(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    writer, calc, doubler = nested_run(f"sqlite:///{db}")
    out = runner.invoke(app, ["show", writer, "--store", str(db)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()

    def at(text: str) -> tuple[int, int]:
        i = next(n for n, line in enumerate(lines) if text in line)
        return i, len(lines[i]) - len(lines[i].lstrip())

    step1, pad1 = at('step 1: calculator({"input": "(2+3)*2?"}) → 10')
    child, pad_c = at(f"↳ calculator run {calc} success")
    add, pad_add = at('step 1: add({"a": 2, "b": 3}) → 5')
    grand, pad_g = at(f"↳ doubler run {doubler} success")
    double, pad_d = at('step 1: double({"n": 5}) → 10')
    step2, pad2 = at("step 2: transfer_to_editor")
    assert step1 < child < add < grand < double < step2
    assert pad1 < pad_c < pad_add < pad_g < pad_d and pad2 == pad1  # each run one level in
    hand, _ = at("→ handed to editor (from writer): polish")
    guard, _ = at("guardrail polite (input) passed → passed")
    assert guard < step1 < step2 < hand
    assert "answer: ten" in out.output

    # a child run shown by itself names its parent
    out = runner.invoke(app, ["show", calc, "--store", str(db)])
    assert out.exit_code == 0 and f"child of {writer}, call 0:q1" in out.output
    assert f"↳ doubler run {doubler}" in out.output


def test_runs_hides_child_runs_unless_nested(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    writer, calc, doubler = nested_run(f"sqlite:///{db}")
    out = runner.invoke(app, ["runs", "--store", str(db)])
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in out.output.splitlines()]
    assert rows[0][0] == "run id" and "parent" not in rows[0]
    assert [r[0] for r in rows[1:]] == [writer]
    out = runner.invoke(app, ["runs", "--store", str(db), "--nested"])
    rows = [line.split("\t") for line in out.output.splitlines()]
    assert rows[0][-1] == "parent"
    parents = {r[0]: r[-1] for r in rows[1:]}
    assert parents == {writer: "", calc: writer, doubler: calc}
    out = runner.invoke(app, ["runs", "--store", str(db), "--limit", "1"])  # children do not take the page
    assert [line.split("\t")[0] for line in out.output.splitlines()[1:]] == [writer]


def test_show_nests_an_agent_guardrail_under_its_decision(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    judge = Agent("judge", answer_data_type=bool, model=ScriptedModel([final(True)]))
    agent = Agent("poet", output_guardrails=[output_guardrail(judge, name="judge")],
                  model=ScriptedModel([final("roses")]))
    res = Runner(agent, store=f"sqlite:///{db}").call("a poem")
    assert res.status == "success", res
    child = child_run_id(res.run_id, "guardrail:output:judge:0:")
    out = runner.invoke(app, ["show", res.run_id, "--store", str(db)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    decision = next(i for i, line in enumerate(lines) if "guardrail judge (output) passed" in line)
    assert f"↳ judge run {child} success" in lines[decision + 1]


SHOP = '''
from treadle import Agent, Function, FunctionTool, ScriptedModel


def pay(amount: int) -> str:
    """Pay an invoice."""
    with open("paid.txt", "a") as f:
        f.write(f"{amount}\\n")
    return f"paid {amount}"


def assistant():
    accountant = Agent("accountant", tools=[FunctionTool(pay, require_approval=True)], model=ScriptedModel(
        [Function(id="pay-1", name="pay", kwargs={"amount": 90}), Function(name="finish", kwargs={"answer": "paid"})],
        per_run=True))
    return Agent("assistant", tools=[accountant.as_tool()], model=ScriptedModel(
        [Function(id="a1", name="accountant", kwargs={"input": "Pay invoice 12"}),
         Function(name="finish", kwargs={"answer": "Invoice 12 is paid."})], per_run=True))
'''


def _suspended_program_run(tmp_path: Path, monkeypatch: object) -> tuple[Path, str, str]:
    """A program's run, suspended on its inner agent's call (as a program would leave it)."""
    import importlib.util

    monkeypatch.chdir(tmp_path)  # type: ignore[attr-defined]
    (tmp_path / "shop.py").write_text(SHOP)
    spec = importlib.util.spec_from_file_location("shop_program", tmp_path / "shop.py")
    assert spec is not None and spec.loader is not None
    shop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shop)
    db = tmp_path / "runs.db"
    res = Runner(shop.assistant(), store=f"sqlite:///{db}", suspend_for_approval=True).call("Pay invoice 12.")
    assert res.status == "waiting_for_approval", res
    return db, res.run_id, child_run_id(res.run_id, "0:a1")


def test_approve_an_inner_call_then_resume_replay_and_fork_a_program_run(tmp_path: Path, monkeypatch: object) -> None:
    db, outer, child = _suspended_program_run(tmp_path, monkeypatch)
    agent = f"{tmp_path / 'shop.py'}:assistant"
    out = runner.invoke(app, ["resume", child, "--store", str(db), "--agent", agent])
    assert out.exit_code == 2 and "resume that one" in out.output  # a child run resumes with its caller
    out = runner.invoke(app, ["approve", outer, "pay-1", "--store", str(db)])  # the outer run's id, the inner call
    assert out.exit_code == 0 and "recorded" in out.output, out.output
    out = runner.invoke(app, ["resume", outer, "--store", str(db), "--agent", agent])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert any(line.startswith(f"  ↳ accountant run {child}") for line in lines), out.output
    assert "    call pay(amount=90)" in lines and "    → paid 90" in lines  # indented: the inner run's
    assert "answer: Invoice 12 is paid." in out.output
    assert (tmp_path / "paid.txt").read_text() == "90\n"
    out = runner.invoke(app, ["replay", outer, "--store", str(db), "--agent", agent])
    assert out.exit_code == 0 and "same" in out.output, out.output
    assert (tmp_path / "paid.txt").read_text() == "90\n90\n"  # the replay ran today's pay again (no model)
    out = runner.invoke(app, ["fork", outer, "--at-step", "2", "--store", str(db), "--agent", agent, "--json"])
    assert out.exit_code == 0, out.output
    assert '"answer": "Invoice 12 is paid."' in out.output and (tmp_path / "paid.txt").read_text() == "90\n90\n"
    out = runner.invoke(app, ["resume", outer, "--store", str(db), "--agent", f"{tmp_path / 'shop.py'}:nope"])
    assert out.exit_code == 2 and "cannot load" in out.output


def test_resume_asks_in_the_terminal_for_an_inner_agents_call(tmp_path: Path, monkeypatch: object) -> None:
    db, outer, child = _suspended_program_run(tmp_path, monkeypatch)
    out = runner.invoke(app, ["resume", outer, "--store", str(db), "--agent", f"{tmp_path / 'shop.py'}:assistant"],
                        input="y\n")
    assert out.exit_code == 0, out.output
    assert "    allow pay(" in out.output  # asked at the inner run's depth, answered here
    assert "answer: Invoice 12 is paid." in out.output and (tmp_path / "paid.txt").read_text() == "90\n"


HELPERS = '''
from treadle import Agent, Function, ScriptedModel


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


helper = Agent("helper", tools=[add], answer_data_type=int, instructions="Adds numbers.", model=ScriptedModel(
    [Function(id="i1", name="add", kwargs={"a": 2, "b": 3}), Function(name="finish", kwargs={"answer": 5})],
    per_run=True))
helper_tool = helper.as_tool()
'''


def test_run_with_an_agent_as_a_tool_shows_the_inner_run_indented(tmp_path: Path, monkeypatch: object) -> None:
    """`treadle run --tool helpers:helper_tool` (an ``Agent.as_tool``): the inner agent runs as a
    child run, its steps shown one level in, journaled under the CLI's run."""
    from treadle.cli import _common

    monkeypatch.chdir(tmp_path)  # type: ignore[attr-defined]
    (tmp_path / "helpers_cli.py").write_text(HELPERS)

    def scripted(spec: str) -> ScriptedModel:  # the outer model (the CLI's model strings are real models)
        return ScriptedModel([Function(id="o1", name="helper", kwargs={"input": "2 + 3?"}), final("5, said helper")],
                             per_run=True)

    monkeypatch.setattr(_common, "resolve_model", scripted)  # type: ignore[attr-defined]
    db = tmp_path / "runs.db"
    for extra in ([], ["--require-approval", "helper", "--yes"]):
        out = runner.invoke(app, ["run", "What is 2 + 3?", "--tool", "helpers_cli:helper_tool", "--store", str(db),
                                  *extra])
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        at = {text: next(i for i, line in enumerate(lines) if line.startswith(text))
              for text in ("  call helper(input='2 + 3?')", "  ↳ helper run ", "    call add(a=2, b=3)", "    → 5",
                           "    inner answer: 5", "  → 5", "answer: 5, said helper")}
        assert list(at.values()) == sorted(at.values()), out.output
        if extra:
            assert "  approved helper(" in out.output
    outer = runner.invoke(app, ["runs", "--store", str(db), "--nested"])
    rows = [line.split("\t") for line in outer.output.splitlines()[1:]]
    assert len(rows) == 4 and sum(1 for r in rows if r[-1]) == 2, outer.output  # two runs, each with its child
    parent = next(r[0] for r in rows if not r[-1])
    child = child_run_id(parent, "0:o1")
    assert any(r[0] == child for r in rows)
    out = runner.invoke(app, ["show", parent, "--store", str(db)])
    assert f"↳ helper run {child} success" in out.output and 'add({"a": 2, "b": 3}) → 5' in out.output
