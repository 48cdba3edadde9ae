"""One journaled run (or its resume) in a process that can be killed at any journal write boundary.

    python boundary_worker.py STORE_URL RUN_ID TOOL_LOG MODE KILL_AT [GO_FILE] [LEASE_TTL]

MODE: ``start`` (a new run), ``resume``, or ``decide:<approve|deny>`` (record a decision on the
run's waiting call). KILL_AT: SIGKILL this process just before the store's KILL_AT-th
statement (1-based; labels from ``treadle.store.base.boundary``); 0: never. GO_FILE: wait
for this file to exist before starting (to race several processes, or to have a process
ready before its KILL_AT is known: a number in the file replaces KILL_AT). Prints one JSON line:
``{"status", "answer", "boundaries", "error_type"}``. Exit 0: the run ended (or the decision
was recorded); 3: refused (RunLeasedError / AlreadyDecidedError); 4: another error.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

from treadle import (
    Agent,
    AlreadyDecidedError,
    Function,
    FunctionTool,
    RunContext,
    RunLeasedError,
    Runner,
    ScriptedModel,
)
from treadle.store import base
from treadle.types import to_jsonable

# the script: charge (not idempotent), lookup (idempotent), charge, then the answer
PLAN = [("charge", {"amount": 5}), ("lookup", {"key": "x"}), ("charge", {"amount": 7})]


def _question(messages: list) -> str:
    """The run's input: its first user message (a native agent without instructions sends no system message)."""
    return next(m["content"] for m in messages if m["role"] == "user")


def make_runner(store: str, log_path: str, *, lease_ttl: float = 30.0, approval: bool = False,
                nested: bool | None = None, scenario: str | None = None) -> Runner[str]:
    if nested is None:
        nested = os.environ.get("BOUNDARY_NESTED") == "1"
    if scenario is None:  # handoff | guardrails: multi_agent_scenarios.py
        scenario = os.environ.get("BOUNDARY_SCENARIO") or None
    def record(kind: str, ctx: RunContext[None]) -> None:
        with open(log_path, "a") as f:  # O_APPEND: whole lines, from any process
            f.write(f"{kind} {ctx.tool_call_id} {ctx.idempotency_key} {os.getpid()}\n")

    def charge(ctx: RunContext[None], amount: int) -> str:
        """Charge a card (not idempotent: must not run twice)."""
        record("charge", ctx)
        gate = os.environ.get("BOUNDARY_GATE")  # the stale-owner test holds the first charge here
        if gate and str(ctx.tool_call_id).endswith("-c0"):
            while not os.path.exists(gate):
                time.sleep(0.01)
        return f"charged {amount}"

    def lookup(ctx: RunContext[None], key: str) -> str:
        """Read a value (idempotent)."""
        record("lookup", ctx)
        return f"value of {key}"

    def script(messages: list[dict]) -> Function:
        run = _question(messages)
        done = sum(1 for m in messages if m["role"] == "tool")
        if done < len(PLAN):
            name, kwargs = PLAN[done]
            return Function(id=f"{run}-c{done}", name=name, kwargs=kwargs)
        return Function(name="finish", kwargs={"answer": f"done {run}"})

    if scenario is not None:
        import multi_agent_scenarios as sc

        def log(name: str) -> None:
            with open(log_path, "a") as f:
                f.write(f"{name} - - {os.getpid()}\n")

        agent = (sc.handoff_agent(charge, lookup) if scenario == "handoff" else sc.guarded_agent(charge, lookup, log))
        runner = Runner(agent, store=store, lease_ttl=lease_ttl)
        runner._journal.max_delay = 3600.0
        return runner
    model = ScriptedModel([script], repeat_last=True, native_tools=True)
    model.record_requests = False
    agent = Agent(tools=[FunctionTool(charge, require_approval=approval), FunctionTool(lookup, idempotent=True)],
                  model=model, max_steps=len(PLAN) + 3)
    if nested:  # the same run one level down: an outer agent calls this one as its tool "ledger"
        agent.name = "ledger"

        def outer_script(messages: list[dict]) -> Function:
            run = _question(messages)
            if not any(m["role"] == "tool" for m in messages):
                return Function(id=f"{run}-outer", name="ledger", kwargs={"input": run})
            return Function(name="finish", kwargs={"answer": f"done {run}"})

        outer_model = ScriptedModel([outer_script], repeat_last=True, native_tools=True)
        outer_model.record_requests = False
        agent = Agent("desk", tools=[agent.as_tool()], model=outer_model, max_steps=3)
    runner = Runner(agent, store=store, lease_ttl=lease_ttl, suspend_for_approval=approval)
    runner._journal.max_delay = 3600.0  # completions travel with the next write: the same boundaries every run
    return runner


def main() -> None:
    store, run_id, log_path, mode, kill_at = sys.argv[1:6]
    go = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] != "-" else None
    ttl = float(sys.argv[7]) if len(sys.argv) > 7 else 30.0
    count = [0]
    limit = int(kill_at)

    def hook(label: str) -> None:
        count[0] += 1
        if count[0] == limit:
            os.kill(os.getpid(), signal.SIGKILL)

    approval = mode.startswith("decide") or os.environ.get("BOUNDARY_APPROVAL") == "1"
    runner = make_runner(store, log_path, lease_ttl=ttl, approval=approval)
    if go:
        while not os.path.exists(go):
            time.sleep(0.001)
        with open(go) as f:
            text = f.read().strip()
        if text:
            limit = int(text)
    base.boundary_hook = hook
    out: dict[str, object] = {}
    code = 0
    try:
        if mode == "start":
            res = asyncio.run(runner.acall(run_id, id=run_id))
        elif mode == "resume":
            res = runner.resume(run_id)
        else:
            call = next(e.payload["item"]["id"] for e in reversed(runner.store.events(run_id))
                        if e.name == "agent.tool_permission_request")
            runner.record_decision(run_id, call, approve=mode.endswith("approve"))
            res = None
        if res is not None:
            out = {"status": res.status, "answer": to_jsonable(res.answer), "error_type": res.error_type,
                   "answer_type": type(res.answer).__name__}
    except (RunLeasedError, AlreadyDecidedError) as e:
        out, code = {"error_type": type(e).__name__, "error": str(e)}, 3
    except Exception as e:
        out, code = {"error_type": type(e).__name__, "error": str(e)}, 4
    base.boundary_hook = None
    out["boundaries"] = count[0]
    print(json.dumps(out), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
