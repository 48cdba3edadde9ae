"""The shapes of the seed's objects the adapter (``seed_runner``) reads: agents, planners, tool
managers and their outputs are the user's, so each shape is a Protocol, checked with isinstance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

from ..types import Function

if TYPE_CHECKING:
    from .._run import RunState

__all__ = [
    "SeedRunnerView", "AnswerType", "ContextMap", "Executed", "ExecutesAsync", "ExecutesSync", "Failed",
    "FinalFlags", "FunctionLike", "ListsTools", "Named", "NeedsApproval", "ObservationLimit", "PlansAsync",
    "PlansSync", "ThinkingModel"
]


class SeedRunnerView(Protocol):
    """What the adapter reads of the Runner driving it (``treadle.Runner``, not imported here:
    ``runner.py`` imports the adapter)."""

    @property
    def agent(self) -> Any: ...  # the agent-shaped object the user gave (its planner and tool manager are theirs)
    @property
    def conversation_memory(self) -> object: ...
    @property
    def _active(self) -> Mapping[str, RunState]: ...


@runtime_checkable
class Named(Protocol):
    @property
    def name(self) -> object: ...


@runtime_checkable
class ObservationLimit(Protocol):
    @property
    def max_observation_chars(self) -> int: ...


@runtime_checkable
class AnswerType(Protocol):
    @property
    def answer_data_type(self) -> object: ...


@runtime_checkable
class ThinkingModel(Protocol):
    @property
    def is_thinking_model(self) -> object: ...


@runtime_checkable
class PlansSync(Protocol):
    def call(self, *, prompt_kwargs: dict[str, object], model_kwargs: dict[str, object], use_cache: object,
             id: object) -> object: ...


@runtime_checkable
class PlansAsync(Protocol):
    def acall(self, *, prompt_kwargs: dict[str, object], model_kwargs: dict[str, object], use_cache: object,
              id: object) -> object: ...


@runtime_checkable
class FunctionLike(Protocol):
    """An action of AdalFlow's ``Function`` shape (another class than treadle's)."""

    @property
    def id(self) -> object: ...
    @property
    def thought(self) -> object: ...
    @property
    def name(self) -> object: ...
    @property
    def args(self) -> object: ...
    @property
    def kwargs(self) -> object: ...


@runtime_checkable
class FinalFlags(Protocol):
    """The seed's spelling of the final answer: ``_is_answer_final`` and ``_answer``."""

    @property
    def _is_answer_final(self) -> object: ...
    @property
    def _answer(self) -> object: ...


@runtime_checkable
class ExecutesSync(Protocol):
    def execute_func(self, func: Function) -> object: ...


@runtime_checkable
class ExecutesAsync(Protocol):
    def execute_func_async(self, func: Function) -> object: ...


@runtime_checkable
class ListsTools(Protocol):
    @property
    def tools(self) -> object: ...


@runtime_checkable
class ContextMap(Protocol):
    @property
    def _context_map(self) -> object: ...


@runtime_checkable
class NeedsApproval(Protocol):
    @property
    def require_approval(self) -> object: ...


@runtime_checkable
class Executed(Protocol):
    """What ``execute_func`` returns: a ``FunctionOutput``, or an object like one."""

    @property
    def output(self) -> object: ...


@runtime_checkable
class Failed(Protocol):
    @property
    def error(self) -> object: ...


