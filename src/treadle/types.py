"""Core data types: the planner's action, tool outputs, steps and run results.

These are plain (slotted) dataclasses rather than pydantic models: they are created
several times per step on the hot path, and a dataclass costs a fraction of a model.
pydantic still serialises them (``treadle.types.to_jsonable``) and validates answers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

__all__ = [
    "AssistantResponse",
    "Function",
    "FunctionDefinition",
    "FunctionOutput",
    "GeneratorOutput",
    "RunContext",
    "RunnerResult",
    "RunStatus",
    "StepOutput",
    "ToolOutput",
    "Usage",
    "UserQuery",
    "new_id",
    "to_jsonable",
]

T = TypeVar("T")

RunStatus = Literal["running", "success", "max_steps", "error", "cancelled", "waiting_for_approval"]
ToolStatus = Literal["success", "error", "cancelled"]

FINISH_TOOL = "finish"


def new_id() -> str:
    """A fresh random id (uuid4 hex)."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class Usage:
    """Token and request accounting, as reported by the model provider."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage | None) -> None:
        if other is None:
            return
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.tool_calls += other.tool_calls
        self.cost_usd += other.cost_usd

    def copy(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.requests, self.tool_calls, self.cost_usd)


@dataclass(slots=True)
class Function:
    """One action chosen by the planner: a tool call, or the final answer.

    The final answer has two spellings, both recognised: the seed's own
    (``_is_answer_final=True`` with the answer in ``_answer``), and a call of the
    built-in ``finish`` tool (``name="finish", kwargs={"answer": ...}``).
    """

    id: str | None = None
    thought: str | None = None
    name: str = ""
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    _is_answer_final: bool | None = None
    _answer: Any = None

    @property
    def is_final(self) -> bool:
        """True when this action is the final answer (either spelling)."""
        return self._is_answer_final is True or (self.name == FINISH_TOOL and not self.args)

    @property
    def final_answer(self) -> Any:
        if self._is_answer_final is True:
            return self._answer
        kw = self.kwargs
        if "answer" in kw:
            return kw["answer"]
        # finish called with a single unnamed keyword: take its value
        if len(kw) == 1:
            return next(iter(kw.values()))
        return kw or None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "thought": self.thought, "name": self.name,
                             "args": list(self.args), "kwargs": dict(self.kwargs)}
        if self._is_answer_final is not None:
            d["_is_answer_final"] = self._is_answer_final
            d["_answer"] = self._answer
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Function:
        return cls(id=d.get("id"), thought=d.get("thought"), name=d.get("name") or "",
                   args=list(d.get("args") or []), kwargs=dict(d.get("kwargs") or {}),
                   _is_answer_final=d.get("_is_answer_final"), _answer=d.get("_answer"))

    @classmethod
    def from_function(cls, fn: Any, thought: str | None = None, *args: Any, **kwargs: Any) -> Function:
        return cls(thought=thought, name=fn.__name__, args=list(args), kwargs=kwargs)


@dataclass(slots=True)
class FunctionDefinition:
    """A tool's schema as the model sees it."""

    func_name: str
    func_desc: str = ""
    func_parameters: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] | None = None

    def to_json_schema_tool(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this definition."""
        return {"type": "function", "function": {"name": self.func_name, "description": self.func_desc,
                                                 "parameters": self.func_parameters}}

    def fn_schema_str(self, type: str = "json") -> str:
        return json.dumps({"name": self.func_name, "description": self.func_desc,
                           "parameters": self.func_parameters})


@dataclass(slots=True)
class ToolOutput:
    """A completed tool call, even one that failed.

    ``observation`` is what the model sees, ``display`` what a user interface shows.
    """

    output: Any = None
    observation: str | None = None
    display: str | None = None
    is_streaming: bool = False
    metadata: dict[str, Any] | None = None
    status: ToolStatus = "success"


@dataclass(slots=True)
class FunctionOutput:
    """The result of executing one Function: the raw output or the error text."""

    name: str
    input: Function | None = None
    parsed_input: Any = None
    output: Any = None
    error: str | None = None


@dataclass(slots=True)
class StepOutput:
    """One recorded step: the action taken and what the model observed.

    ``observation`` is the value fed back to the model (a string after rendering;
    the raw tool output is kept in ``output``). The final-answer step is never recorded.
    """

    step: int = 0
    action: Function | None = None
    function: Function | None = None
    observation: Any = None
    output: Any = None
    status: ToolStatus = "success"
    usage: Usage | None = None
    planner_prompt: str | None = None
    ctx: dict[str, Any] | None = None


@dataclass(slots=True)
class GeneratorOutput(Generic[T]):
    """What the planner produced for one step: parsed ``data`` or an ``error``."""

    data: T | None = None
    error: str | None = None
    raw_response: Any = None
    thinking: str | None = None
    usage: Usage | None = None
    id: str | None = None
    input: Any = None
    tool_use: Any = None
    api_response: Any = None
    metadata: dict[str, Any] | None = None
    recoverable: bool = True


@dataclass(slots=True)
class RunnerResult(Generic[T]):
    """The outcome of a run, in every ending.

    ``status`` is one of success, max_steps, error, cancelled. On success ``answer``
    holds the typed answer and ``error`` is None; otherwise ``answer`` is None and
    ``error`` says what happened. ``step_history`` holds every recorded step.
    """

    step_history: list[StepOutput] = field(default_factory=list)
    answer: T | None = None
    error: str | None = None
    ctx: Any = None
    usage: Usage = field(default_factory=Usage)
    status: RunStatus = "success"
    run_id: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


@dataclass(slots=True)
class RunContext(Generic[T]):
    """What a tool receives when one of its parameters is annotated ``RunContext``.

    ``context`` is the ``ctx`` object given to the Runner. The parameter never
    appears in the tool's JSON schema.
    """

    context: T
    run_id: str
    step: int = 0
    usage: Usage = field(default_factory=Usage)
    tool_call_id: str | None = None

    @property
    def deps(self) -> T:
        return self.context


@dataclass(slots=True)
class UserQuery:
    query_str: str | None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class AssistantResponse:
    response_str: Any
    metadata: dict[str, Any] | None = None


def to_jsonable(obj: Any) -> Any:
    """Turn treadle objects (and anything pydantic knows) into JSON-ready values.

    Never raises: values pydantic cannot serialise are represented by ``repr``.
    """
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(obj, fallback=_fallback, serialize_unknown=True)


def _fallback(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    return repr(obj)
