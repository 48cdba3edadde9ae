"""AdalFlow's Runner, on treadle's: any agent-shaped object, the seed's helper methods, ``seed_compat``.

``treadle.compat.Runner`` drives what the seed's Runner drove: a ``treadle.compat.Agent``, a
``treadle.Agent``, or any object with an Agent's shape (``planner``, ``tool_manager``,
``max_steps``, ``answer_data_type``), whose planner is driven with the seed's protocol
(``treadle.compat.seed_runner``). It keeps the seed Runner's helper methods (``_process_data``,
``_check_last_step``…), takes ``seed_compat=`` (the seed's answer texts where treadle differs) and,
like the seed's, passes over keyword arguments it does not know and prompt variables no template
reads (the seed's planner may read them).
"""

from __future__ import annotations

from typing import Any, Iterable, TypeVar

from ..protocols import AgentShape, EventSink, MemoryProtocol, PermissionManagerProtocol
from ..runner import Runner as _Runner
from ..usage import UsageLimits
from .seed_runner import SeedRunnerMixin, driven_agent

__all__ = ["Runner"]

T = TypeVar("T")


class Runner(SeedRunnerMixin, _Runner[T]):
    """``treadle.Runner`` with AdalFlow's Runner arguments and helpers (see the module docstring)."""

    _check_prompt = False

    def __init__(self, agent: Any | AgentShape, ctx: Any = None, max_steps: int | None = None,
                 permission_manager: PermissionManagerProtocol | None = None,
                 conversation_memory: MemoryProtocol | None = None, *,
                 event_handlers: Iterable[EventSink] = (), usage_limits: UsageLimits | None = None,
                 store: Any = None, run_metadata: dict[str, Any] | None = None,
                 suspend_for_approval: bool = False, lease_ttl: float = 30.0, seed_compat: bool | None = None,
                 **kwargs: Any) -> None:
        self.seed_compat = seed_compat
        self.kwargs = kwargs
        super().__init__(agent, ctx, max_steps, permission_manager, conversation_memory,
                         event_handlers=event_handlers, usage_limits=usage_limits, store=store,
                         run_metadata=run_metadata, suspend_for_approval=suspend_for_approval, lease_ttl=lease_ttl)

    def _drive_target(self, agent: Any) -> Any:
        return driven_agent(self)
