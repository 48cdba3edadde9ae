"""Porting from AdalFlow: the seed-compatibility switch and seed-shaped helpers.

treadle keeps the seed's public names, so most AdalFlow agent code ports by changing its
imports. Where treadle deliberately differs in a way ported code may notice (the list is
on docs/seed-deviations.md), one switch brings back the seed's behaviour:

* ``Runner(agent, seed_compat=True)`` for one runner, or
* ``TREADLE_SEED_COMPAT=1`` in the environment (or ``set_seed_compat(True)``) for the process.

With it on: a run that ends without an answer puts the seed's text in ``answer`` ("No output
generated after N steps (max_steps: M)", or the error text); a failed streamed run sets
``stream._exception`` to the error text and ``stream_events()`` raises ``RuntimeError`` after
the last event; ``FunctionTool.__call__`` returns a ``FunctionOutput``; ``ConversationMemory()``
renders every metadata key into the history.

Porting an AdalFlow program means changing its imports to this module: ``from treadle.compat
import Agent, Runner, FunctionTool, GeneratorOutput, ...``. ``treadle.compat.Agent`` and
``treadle.compat.Runner`` take AdalFlow's constructor arguments and behaviours (model clients
in AdalFlow's shape, ``role_desc``, a seed planner, agents of any shape…); every other name of
the seed's surface is here too, whether it is treadle's own (``Function``, ``RunnerResult``, the
events…) or kept only for AdalFlow code (``GeneratorOutput``, ``UserQuery``, ``ModelType``…).

Nothing here is imported by ``import treadle`` except this small module; the names load on first use.
"""

from __future__ import annotations

import os
from typing import Any


SEED_COMPAT_ENV = "TREADLE_SEED_COMPAT"
_override: bool | None = None


def set_seed_compat(enabled: bool | None) -> None:
    """Turn the seed-compatibility switch on or off for the process (None: back to the env var)."""
    global _override
    _override = None if enabled is None else bool(enabled)


def seed_compat(flag: bool | None = None) -> bool:
    """Whether seed behaviour is on: ``flag`` when given, else the process setting, else the env var."""
    if flag is not None:
        return bool(flag)
    if _override is not None:
        return _override
    return os.environ.get(SEED_COMPAT_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


# name -> the module it lives in (relative to treadle), loaded on first use
_NAMES: dict[str, str] = {
    "Agent": ".compat.agent", "Runner": ".compat.runner", "LLM_TOOL": ".compat.agent",
    "AdalFlowModel": ".models.adalflow_client", "is_adalflow_client": ".models.adalflow_client",
    "AdalFlowClient": ".protocols", "SeedPlanner": ".protocols", "SeedToolManager": ".protocols",
    "AgentShape": ".protocols",
    **{n: ".types" for n in ("AssistantResponse", "Function", "FunctionDefinition", "FunctionOutput",
                            "GeneratorOutput", "ModelType", "RunnerResult", "StepOutput", "ToolOutput",
                            "Usage", "UserQuery")},
    **{n: ".events" for n in ("FinalOutputItem", "FunctionRequest", "QueueCompleteSentinel",
                             "RawResponsesStreamEvent", "RunItem", "RunItemStreamEvent", "StepRunItem",
                             "StreamEvent", "ToolCallActivityRunItem", "ToolCallPermissionRequest",
                             "ToolCallRunItem", "ToolOutputRunItem")},
    "FunctionTool": ".tools", "FunctionType": ".tools", "ToolManager": ".tools", "tool": ".tools",
    "ApprovalOutcome": ".permissions", "ApprovalResponse": ".permissions", "PermissionManager": ".permissions",
    "ConversationMemory": ".memory", "TurnDB": ".memory",
    "RunnerStreamingResult": ".streaming",
}

__all__ = ["SEED_COMPAT_ENV", "ModelClient", "seed_compat", "set_seed_compat", *sorted(_NAMES)]


def __getattr__(name: str) -> Any:  # the names load on first use
    import importlib

    if name == "ModelClient":  # AdalFlow's ModelClient base class (treadle.ModelClient is treadle's protocol)
        from ..models.adalflow_client import SeedModelClient

        return SeedModelClient
    where = _NAMES.get(name)
    if where is None:
        raise AttributeError(f"module 'treadle.compat' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, "treadle"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
