"""A run whose MCP tool call asks a question (server-everything's ``trigger-elicitation-request``),
suspended in a SQLite journal: ``python elicitation_run.py DB`` prints ``RUN <id> <status>`` and
then waits to be killed (tests/mcp/test_mcp_elicitation.py kills it and answers from another process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from treadle import Agent, Function, Runner, ScriptedModel
from treadle.tools.mcp import MCPServerStdio


def everything() -> MCPServerStdio:
    return MCPServerStdio("node", [os.environ["TREADLE_MCP_EVERYTHING"], "stdio"], errlog=subprocess.DEVNULL,
                          name="everything", include=["trigger-elicitation-request", "get-sum"], timeout=20)


def agent(server: MCPServerStdio, script: list[Function]) -> Agent[str]:
    return Agent("asker", tools=server.tools(), model=ScriptedModel(script, per_run=True))


ASK = Function(id="c1", name="trigger-elicitation-request", kwargs={})
FINISH = Function(name="finish", kwargs={"answer": "asked"})


def resumed() -> Agent[str]:
    """The same agent, for `treadle approve/resume --agent elicitation_run:resumed`."""
    return agent(everything(), [ASK, FINISH])

if __name__ == "__main__":
    server = everything()
    runner = Runner(agent(server, [ASK, FINISH]), store=f"sqlite:///{sys.argv[1]}", suspend_for_approval=True,
                    run_metadata={"server": {"agent": "asker", "session_id": None}})
    result = runner.call("ask me")
    print(f"RUN {result.run_id} {result.status}", flush=True)
    time.sleep(600)  # killed by the test
