"""Core data types: the planner's action, tool outputs, steps and run results.

These are plain (slotted) dataclasses rather than pydantic models: they are created
several times per step on the hot path, and a dataclass costs a fraction of a model.
pydantic still serialises them (``treadle.types.to_jsonable``) and validates answers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

from ._factories import new_dict, new_list
from ._jsonable import MAX_INT_DIGITS as MAX_INT_DIGITS  # re-exported: the store reads it here
from ._jsonable import fallback, flat, is_strict, repr_of, safe, utf8

__all__ = [
    "AssistantResponse",
    "Function",
    "FunctionDefinition",
    "FunctionOutput",
    "GeneratorOutput",
    "ModelType",
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
PlannerMode = Literal["auto", "json", "native"]

FINISH_TOOL = "finish"
# prompt conventions shared by the planner and the models that read its messages (models.local)
OBSERVATION_PREFIX = "Observation: "
EXAMPLES_KEY = "x-treadle-examples"  # worked examples of a tool, carried on its output-schema branch


class ModelType(enum.Enum):
    """The seed's model kinds (``Agent(model_type=...)``, AdalFlow-style model clients)."""

    EMBEDDER = enum.auto()
    LLM = enum.auto()
    LLM_REASONING = enum.auto()
    RERANKER = enum.auto()
    IMAGE_GENERATION = enum.auto()
    UNDEFINED = enum.auto()


_ids = random.Random(int.from_bytes(os.urandom(32), "big"))  # seeded by the OS once: no syscall per id
os.register_at_fork(after_in_child=lambda: _ids.seed(int.from_bytes(os.urandom(32), "big")))


def new_id() -> str:
    """A fresh random 128-bit id (32 hex digits, as uuid4's hex). Unique, not secret: ids are
    names, never credentials (each process draws from its own OS-seeded generator)."""
    return f"{_ids.getrandbits(128):032x}"


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, the first 12 the time in milliseconds, the other 80 bits
    random (as UUIDv7). Runs started close together sort together, so a journal's index takes
    their appends on a few neighbouring pages instead of one page per run (half the SQLite
    cost of a step with 100 concurrent runs); unique and unguessable as new_id."""
    return f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}{_ids.getrandbits(80):020x}"


def child_run_id(parent_run_id: str, key: str) -> str:
    """A child run's id (an agent called as a tool): the parent's time prefix, so the journal
    keeps the two together, and 80 bits from a hash of the parent's id and the call's ``key``,
    so a resumed parent finds the same child again."""
    digest = hashlib.sha256(f"{parent_run_id}/{key}".encode()).hexdigest()
    return parent_run_id[:12] + digest[:20]


@dataclass(slots=True)
class Usage:
    """Token and request accounting, as reported by the model provider."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    determined_replies: int = 0
    """Replies the request fully determined, so no model ran (``ModelResponse.model_ran`` False:
    the local model's grammar left one possible reply). Not in ``requests``; no tokens."""

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
        self.determined_replies += other.determined_replies

    def copy(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.requests, self.tool_calls, self.cost_usd,
                     self.determined_replies)


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
    args: list[object] = field(default_factory=new_list)
    kwargs: dict[str, object] = field(default_factory=new_dict)
    _is_answer_final: bool | None = None
    _answer: object = None

    @property
    def is_final(self) -> bool:
        """True when this action is the final answer (either spelling)."""
        return self._is_answer_final is True or (self.name == FINISH_TOOL and not self.args)

    @property
    def final_answer(self) -> object:
        if self._is_answer_final is True:
            return self._answer
        kw = self.kwargs
        if "answer" in kw:
            return kw["answer"]
        # finish called with a single unnamed keyword: take its value
        if len(kw) == 1:
            return next(iter(kw.values()))
        return kw or None

    def copy(self) -> Function:
        """A plain Function with the same fields (args and kwargs copied); works for subclasses
        with their own ``__init__`` too."""
        return Function(id=self.id, thought=self.thought, name=self.name, args=list(self.args),
                        kwargs=dict(self.kwargs), _is_answer_final=self._is_answer_final, _answer=self._answer)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"id": self.id, "thought": self.thought, "name": self.name,
                             "args": list(self.args), "kwargs": dict(self.kwargs)}
        if self._is_answer_final is not None:
            d["_is_answer_final"] = self._is_answer_final
            d["_answer"] = self._answer
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Function:
        """The inverse of ``to_dict``; a field of the wrong type raises ``TypeError``."""
        fid, thought, name, final = d.get("id"), d.get("thought"), d.get("name") or "", d.get("_is_answer_final")
        args: object = d.get("args") or ()
        kwargs: object = d.get("kwargs") or {}
        if fid is not None and not isinstance(fid, str):
            raise TypeError(f"a Function's id is a string, not {fid!r}")
        if thought is not None and not isinstance(thought, str):
            raise TypeError(f"a Function's thought is a string, not {thought!r}")
        if final is not None and not isinstance(final, bool):
            raise TypeError(f"a Function's _is_answer_final is a bool, not {final!r}")
        if not isinstance(name, str) or not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise TypeError(f"not a Function's fields: {d!r}")
        return cls(id=fid, thought=thought, name=name, args=list(cast("Iterable[object]", args)),
                   kwargs={str(k): v for k, v in cast("dict[object, object]", kwargs).items()},
                   _is_answer_final=final, _answer=d.get("_answer"))

    @classmethod
    def from_function(cls, fn: Callable[..., object], thought: str | None = None, *args: object,
                      **kwargs: object) -> Function:
        return cls(thought=thought, name=fn.__name__, args=list(args), kwargs=kwargs)


@dataclass(slots=True)
class FunctionDefinition:
    """A tool's schema as the model sees it."""

    func_name: str
    func_desc: str = ""
    func_parameters: dict[str, object] = field(default_factory=new_dict)
    examples: list[dict[str, object]] | None = None

    def to_json_schema_tool(self) -> dict[str, object]:
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

    output: object = None
    observation: str | None = None
    display: str | None = None
    is_streaming: bool = False
    metadata: dict[str, object] | None = None
    status: ToolStatus = "success"


@dataclass(slots=True)
class FunctionOutput:
    """The result of executing one Function: the raw output or the error text."""

    name: str
    input: Function | None = None
    parsed_input: object = None
    output: object = None
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
    observation: object = None
    output: object = None
    status: ToolStatus = "success"
    usage: Usage | None = None
    planner_prompt: str | None = None
    ctx: dict[str, object] | None = None


@dataclass(slots=True)
class GeneratorOutput(Generic[T]):
    """What the planner produced for one step: parsed ``data`` or an ``error``."""

    data: T | None = None
    error: str | None = None
    raw_response: object = None
    thinking: str | None = None
    usage: Usage | None = None
    id: str | None = None
    input: object = None
    tool_use: object = None
    api_response: object = None
    metadata: dict[str, object] | None = None
    recoverable: bool = True
    images: object = None


@dataclass(slots=True)
class RunnerResult(Generic[T]):
    """The outcome of a run, in every ending.

    ``status`` is one of success, max_steps, error, cancelled. On success ``answer``
    holds the typed answer and ``error`` is None; otherwise ``answer`` is None and
    ``error`` says what happened. ``step_history`` holds every recorded step.
    """

    step_history: list[StepOutput] = field(default_factory=new_list)
    answer: T | None = None
    error: str | None = None
    ctx: object = None
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

    def unwrap(self) -> T:
        """The answer of a run that succeeded; otherwise raises its ending's error, with this
        result as its ``result``: ``MaxStepsExceeded`` (status max_steps), ``RunCancelledError``
        (cancelled), ``RunSuspendedError`` (waiting_for_approval), ``RunFailedError`` (error;
        its ``error_type`` is this one's)."""
        from .errors import MaxStepsExceeded, RunCancelledError, RunFailedError, RunSuspendedError

        if self.status == "success":
            return cast(T, self.answer)
        message = self.error or f"the run ended with status {self.status}"
        if self.status == "max_steps":
            raise MaxStepsExceeded(message, result=self)
        if self.status == "cancelled":
            raise RunCancelledError(message, result=self)
        if self.status == "waiting_for_approval":
            raise RunSuspendedError(message, result=self)
        raise RunFailedError(message, result=self, error_type=self.error_type)


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

    @property
    def idempotency_key(self) -> str:
        """``<run id>:<tool call id>``: the same for a call when its run is resumed after a crash,
        different for every other call. Send it to an API that dedupes (payments, e-mail) so a
        call that runs twice (an idempotent tool re-run after a crash) takes effect once."""
        return f"{self.run_id}:{self.tool_call_id}"


@dataclass(slots=True)
class UserQuery:
    query_str: str | None
    metadata: dict[str, object] | None = None


@dataclass(slots=True)
class AssistantResponse:
    response_str: object
    metadata: dict[str, object] | None = None


def to_jsonable(obj: object) -> Any:
    """Turn treadle objects (and anything pydantic knows) into JSON-ready values.

    Never raises, and the result always passes ``json.dumps(..., allow_nan=False)`` and
    encodes as UTF-8: values pydantic cannot serialise are represented by ``repr`` (or a
    placeholder when ``repr`` fails); bytes that are not UTF-8 by ``"<N bytes>"``; cycles,
    nesting deeper than 100 levels and integers too long for ``int``/``str`` conversion by
    a placeholder string; NaN and infinities by ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
    lone surrogates in text by backslash escapes.
    """
    t = type(obj)  # pyright: ignore[reportUnknownVariableType]
    if t is dict and flat(d := cast("dict[object, object]", obj)):  # a prompt, settings or summary: a copy
        return dict(d)
    if t is Usage:
        u = cast(Usage, obj)
        out: dict[object, object] = {
            "input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "requests": u.requests,
            "tool_calls": u.tool_calls, "cost_usd": u.cost_usd, "determined_replies": u.determined_replies}
        if flat(out):
            return out
    from pydantic_core import to_jsonable_python

    try:
        value = to_jsonable_python(obj, fallback=fallback, serialize_unknown=True)
    except Exception:  # a cycle, too deep, bytes that are not UTF-8, a failing __repr__ inside...
        try:
            return safe(obj, 0, set())
        except Exception:
            return repr_of(obj)
    return value if is_strict(value) else safe(value, 0, set())


# the careful path's parts, by the names the store and the tracer import them by
_fallback, _flat, _utf8 = fallback, flat, utf8
