"""The ``treadle`` command: run an agent, chat with one, list the models you have.

    treadle run "What is 17 + 25?"                 # the embedded model, the demo tools
    treadle run "..." --model openai:gpt-4o-mini --tool mypkg.tools:search --json
    treadle chat
    treadle models

The commands live in the modules beside this one (``_run``, ``_journal``, ``_batch``,
``_serve``); they are registered on :data:`app` here, in the order ``--help`` lists them.
"""

from __future__ import annotations

from ._batch import batch, batch_runner
from ._common import app, build_agent, load_tool, mcp_server, read_config
from ._journal import approve, deny, fork, replay, resume, runs, show
from ._mcp import mcp_app
from ._run import chat, run
from ._serve import models, serve

for _command in (run, chat, runs, show, resume, replay, fork, approve, deny, batch, models, serve):
    app.command()(_command)
app.add_typer(mcp_app, name="mcp")

__all__ = ["app", "batch_runner", "build_agent", "load_tool", "main", "mcp_server", "read_config"]


def main() -> None:
    app()
