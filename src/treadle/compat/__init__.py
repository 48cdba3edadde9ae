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

Nothing here is imported by ``import treadle`` except this small module.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SEED_COMPAT_ENV", "AdalFlowModel", "ModelClient", "seed_compat", "set_seed_compat"]

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


def __getattr__(name: str) -> Any:  # the adapter classes load on first use
    if name in ("AdalFlowModel", "ModelClient", "is_adalflow_client"):
        from ..models import adalflow_client

        return {"AdalFlowModel": adalflow_client.AdalFlowModel, "ModelClient": adalflow_client.SeedModelClient,
                "is_adalflow_client": adalflow_client.is_adalflow_client}[name]
    raise AttributeError(name)
