"""The plug points, as Protocols (PEP 544), and the check that runs when one is plugged in.

What a user may replace, and the Protocol it must fit:

==========================  ===============================  ==========================================
plug point                  Protocol                         where it is checked
==========================  ===============================  ==========================================
model                       ``ModelClient`` (or an           ``Agent(model=/model_client=)``,
                            AdalFlow-style ``AdalFlowClient``,  ``agent.model = ...``
                            wrapped in ``AdalFlowModel``)
planner                     ``SeedPlanner``                  ``Agent(planner=)``, ``Runner(agent)``
tool                        a callable or ``FunctionTool``   ``ToolManager`` (``Agent(tools=)``)
toolset (MCP server, …)     ``Toolset``                      ``ToolManager.add``
permission manager          ``PermissionManagerProtocol``    ``Runner(permission_manager=)``
approver                    ``ApprovalCallback`` (callable)  ``PermissionManager(approval_callback=)``
conversation memory         ``MemoryProtocol``               ``Runner(conversation_memory=)``
memory store                ``MemoryStore``                  ``ConversationMemory(store=)``
run store                   ``RunStore``                     ``Runner(store=)``, ``open_store``
event sink                  ``EventSink`` (+ ``RunObserver``)  ``Runner(event_handlers=)``
==========================  ===============================  ==========================================

The check (``check_plug``) looks for every *method* the Protocol lists and raises
``treadle.errors.PlugError`` (a ``UserError`` and a ``TypeError``) naming the object's type
and what it lacks, at construction, rather than an ``AttributeError`` at the run's first step.
Data attributes a Protocol declares (``ModelClient.native_tools``) are read with a default, so they are not required.

The driver's own view of a run's parts (``DrivenAgent``, ``StepPlanner``,
``DriverToolManager``, ``DriverTool``) is typed here too: a treadle ``Agent`` fits it as it
is, anything agent-shaped through ``treadle.compat.seed_runner.SeedAgent``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from ._driven import DrivenAgent, DriverTool, DriverToolManager, HandoffTarget, StepPlanner
from ._plugs import check_plug, describe, missing_methods, protocol_methods
from .errors import PlugError
from .events import StreamEvent
from .memory._core import MemoryProtocol, MemoryStore
from .models.adalflow_client import is_adalflow_client
from .models.base import ModelClient, StreamingModelClient
from .permissions import ApprovalCallback, PermissionManagerProtocol
from .store.base import RunStore
from .types import PlannerMode

__all__ = [
    "AdalFlowClient",
    "AgentConfig",
    "AgentShape",
    "ApprovalCallback",
    "DriverTool",
    "DriverToolManager",
    "DrivenAgent",
    "EventSink",
    "HandoffTarget",
    "MemoryProtocol",
    "MemoryStore",
    "ModelClient",
    "NamedProvider",
    "PermissionManagerProtocol",
    "RunObserver",
    "RunStore",
    "SeedPlanner",
    "SeedToolManager",
    "StepPlanner",
    "StreamingModelClient",
    "Toolset",
    "check_model",
    "check_plug",
    "missing_methods",
    "protocol_methods",
]

Message = dict[str, Any]


# ---------------------------------------------------------------------------- user plug points
@runtime_checkable
class AdalFlowClient(Protocol):
    """An AdalFlow-style ModelClient: ``call`` (or ``acall``) with the API kwargs; optionally
    ``convert_inputs_to_api_kwargs`` and ``parse_chat_completion``. Wrapped in ``AdalFlowModel``."""

    def call(self, *args: Any, **kwargs: Any) -> object: ...


@runtime_checkable
class SeedPlanner(Protocol):
    """The seed's planner: ``call`` (or ``acall``) ``(prompt_kwargs=, model_kwargs=, use_cache=,
    id=) -> GeneratorOutput`` whose ``data`` is the next ``Function``."""

    def call(self, *args: Any, **kwargs: Any) -> object: ...


@runtime_checkable
class SeedToolManager(Protocol):
    """A seed-style tool manager: ``execute_func`` (or ``execute_func_async``) ``(func) ->
    FunctionOutput``. A treadle ``ToolManager`` is one. Not checked when plugged in (the seed's
    tests build tool managers only to render prompts): a call it cannot execute becomes an
    error observation for the model."""

    def execute_func(self, *args: Any, **kwargs: Any) -> object: ...


@runtime_checkable
class Toolset(Protocol):
    """Many tools from one object (an MCP server): ``treadle_tools()`` lists them; a true
    ``tools_changed`` attribute makes the next run list them again."""

    def treadle_tools(self) -> Iterable[object]: ...


@runtime_checkable
class EventSink(Protocol):
    """Receives every event of a run, synchronously (keep it cheap; an exception is logged)."""

    def __call__(self, event: StreamEvent) -> None: ...


@runtime_checkable
class RunObserver(Protocol):
    """An event sink that also wants the start of each run (the journal, the tracer)."""

    def __call__(self, event: StreamEvent) -> None: ...

    def on_run_start(self, run: Any) -> None: ...  # Any: a treadle._run.RunState (that module imports this one)


@runtime_checkable
class NamedProvider(Protocol):
    """A model client that names its provider (what a price is looked up by, for ``UsageLimits.cost_limit_usd``)."""

    @property
    def provider(self) -> str | None: ...


@runtime_checkable
class AgentShape(Protocol):
    """Anything a Runner can drive with the seed's protocol: an Agent's shape."""

    @property
    def planner(self) -> object: ...

    @property
    def tool_manager(self) -> object: ...

    @property
    def max_steps(self) -> int: ...


# ---------------------------------------------------------------------------- the planner's view of its agent
class AgentConfig(Protocol):
    """What ``treadle.planner.Planner`` reads of its agent (a treadle ``Agent``)."""

    @property
    def model(self) -> ModelClient: ...

    @property
    def tool_manager(self) -> Any: ...

    @property
    def planner_mode(self) -> PlannerMode: ...

    @property
    def template(self) -> str | None: ...

    @property
    def instructions(self) -> str | None: ...

    @property
    def examples(self) -> str | None: ...

    @property
    def answer_data_type(self) -> object: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def model_kwargs(self) -> dict[str, Any]: ...

    @property
    def max_observation_chars(self) -> int: ...

    def get_prompt(self, **prompt_kwargs: object) -> str: ...


# ---------------------------------------------------------------------------- the check
def check_model(model: object) -> None:
    """A model as ``Agent(model=...)`` takes it: a model string (resolved on first use), a
    ``ModelClient``, or an AdalFlow-style client (``call``/``acall``, wrapped in ``AdalFlowModel``)."""
    if model is None or isinstance(model, str):
        return
    if is_adalflow_client(model) or not callable(getattr(model, "request", None)):
        if missing_methods(model, ("call", "acall")) == ["call", "acall"]:
            raise PlugError(f"model {describe(model)} does not fit the ModelClient protocol (treadle.protocols): "
                            "missing method request() (or, for an AdalFlow-style client, call() or acall())")
        return
    check_plug(model, ModelClient, "model")
