"""The driver's view of a run's parts: ``DrivenAgent``, ``StepPlanner``, ``DriverToolManager``,
``DriverTool``, and a handoff (``HandoffSpec``, ``HandoffTarget``). A treadle ``Agent`` fits
``DrivenAgent`` as it is, anything agent-shaped through ``treadle.compat.seed_runner.SeedAgent``.
Re-exported by ``treadle.protocols``; kept below the run state (``treadle._run``) and the
guardrails in the import graph."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ._guardrail_types import InputGuardrail, OutputGuardrail, ToolGuardrail
from .events import ToolCallActivityRunItem
from .models.base import ModelClient, ModelRequest, ModelResponse
from .tools.manager import ToolResult
from .types import Function, GeneratorOutput, RunContext

__all__ = ["DrivenAgent", "DriverTool", "DriverToolManager", "HandoffSpec", "HandoffTarget", "Message", "StepPlanner"]

Message = dict[str, Any]


class DriverTool(Protocol):
    """What the driver asks of one tool: its approval flag, retry budget and argument check."""

    @property
    def name(self) -> str: ...

    @property
    def require_approval(self) -> bool: ...

    @property
    def max_retries(self) -> int: ...

    def validate(self, args: Sequence[object], kwargs: dict[str, object]) -> dict[str, object]: ...


class DriverToolManager(Protocol):
    """The tools as the driver uses them."""

    @property
    def tools(self) -> Sequence[object]: ...

    def refresh(self) -> None: ...

    def get(self, name: str) -> DriverTool | None: ...

    def execute(self, call: Function, make_ctx: Callable[[], RunContext[Any]] | None = None,
                on_activity: Callable[[ToolCallActivityRunItem], None] | None = None) -> Awaitable[ToolResult]: ...


class StepPlanner(Protocol):
    """Builds each model request of a run and parses the replies (``treadle.planner.Planner``)."""

    def mode(self, model: ModelClient) -> str: ...

    def final_style(self, model: ModelClient) -> str: ...

    def initial_messages(self, mode: str, prompt_kwargs: dict[str, Any], final_style: str = "seed"
                         ) -> list[Message]: ...

    def build_request(self, mode: str, messages: list[Message], model_kwargs: dict[str, Any], run_id: str,
                      step: int, final_style: str = "seed") -> ModelRequest: ...

    def parse_response(self, mode: str, resp: ModelResponse) -> GeneratorOutput[list[Function]]: ...

    def add_step_messages(self, mode: str, messages: list[Message], calls: list[Function],
                          observations: list[str], failed: list[bool] | None = None) -> None: ...

    def add_error_messages(self, mode: str, messages: list[Message], raw: object, calls: list[Function] | None,
                           error: str) -> None: ...


class DrivenAgent(Protocol):
    """An agent as the driver (``treadle.loop``) sees it."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> ModelClient: ...

    @property
    def planner(self) -> StepPlanner: ...

    @property
    def tool_manager(self) -> DriverToolManager: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def answer_data_type(self) -> object: ...

    @property
    def model_kwargs(self) -> dict[str, Any]: ...

    @property
    def max_observation_chars(self) -> int: ...

    # what the driver runs around the steps (empty when the agent has none)
    @property
    def input_guardrails(self) -> Sequence[InputGuardrail]: ...

    @property
    def output_guardrails(self) -> Sequence[OutputGuardrail]: ...

    @property
    def tool_guardrails(self) -> Sequence[ToolGuardrail]: ...

    @property
    def handoffs(self) -> Sequence[HandoffSpec]: ...


class HandoffTarget(DrivenAgent, Protocol):
    """An agent another one may hand the conversation to (``handoff(agent)``): a treadle ``Agent``."""

    @property
    def instructions(self) -> str | None: ...


class HandoffSpec(Protocol):
    """A handoff as the driver reads it (``treadle.handoffs.Handoff``): the tool the model calls, the
    agent it hands to, and the filter of the history carried over."""

    @property
    def tool_name(self) -> str: ...

    @property
    def agent(self) -> HandoffTarget: ...

    @property
    def input_filter(self) -> Callable[[list[Message]], list[Message]] | None: ...
