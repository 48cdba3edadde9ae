"""Core data types: the planner's action, tool outputs, steps and run results.

These are plain (slotted) dataclasses rather than pydantic models: they are created
several times per step on the hot path, and a dataclass costs a fraction of a model.
pydantic still serialises them (``treadle.types.to_jsonable``) and validates answers.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import JsonValue

from ._factories import new_dict, new_list

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
    if t is dict and _flat(d := cast("dict[object, object]", obj)):  # a prompt, settings or summary: a copy
        return dict(d)
    if t is Usage:
        u = cast(Usage, obj)
        out: dict[object, object] = {
            "input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "requests": u.requests,
            "tool_calls": u.tool_calls, "cost_usd": u.cost_usd, "determined_replies": u.determined_replies}
        if _flat(out):
            return out
    from pydantic_core import to_jsonable_python

    try:
        value = to_jsonable_python(obj, fallback=_fallback, serialize_unknown=True)
    except Exception:  # a cycle, too deep, bytes that are not UTF-8, a failing __repr__ inside...
        try:
            return _safe(obj, 0, set())
        except Exception:
            return _repr(obj)
    return value if _is_strict(value) else _safe(value, 0, set())


MAX_DEPTH = 100  # nesting kept by to_jsonable's careful path
MAX_INT_DIGITS = 4300  # CPython's default limit on int <-> str conversion (json.loads refuses longer ints)
_MAX_INT_BITS = int(MAX_INT_DIGITS / 0.30103) - 8  # comfortably under MAX_INT_DIGITS decimal digits


def _fallback(obj: object) -> str:
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    return _repr(obj)


def _repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:  # a __repr__ that raises (or an int too long to print)
        text = f"<{type(obj).__name__} object that cannot be shown>"
    return _utf8(text)


def _utf8(text: str) -> str:
    """``text``, with lone surrogates (which UTF-8 cannot encode) backslash-escaped."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _bad_scalar(t: type[object], v: object) -> bool:
    """A str, int or float value that JSON does not keep as it is (a lone surrogate, an int too
    long for ``json.loads``, NaN or an infinity)."""
    if t is str:
        text = cast(str, v)
        return not text.isascii() and _utf8(text) is not text
    if t is int:
        return cast(int, v).bit_length() > _MAX_INT_BITS
    return v != v or v in (math.inf, -math.inf)


_CHECKED = (str, int, float)


def _flat(d: dict[object, object]) -> bool:
    """``d`` has text keys and plain scalar values that JSON keeps as they are (strict JSON,
    UTF-8): to_jsonable would only copy it. (``_is_strict``'s checks, in one pass.)"""
    for k, v in d.items():
        if type(k) is not str or (not k.isascii() and _utf8(k) is not k):
            return False
        t = type(v)
        if t in _CHECKED:
            if _bad_scalar(t, v):
                return False
        elif t is not bool and v is not None:
            return False
    return True


def _is_strict(value: object) -> bool:
    """True when to_jsonable_python's output needs no cleaning (the usual case: one cheap pass)."""
    stack: list[object] = [value]
    while stack:
        v = stack.pop()
        t: type[object] = type(v)
        if t is dict:
            for k, x in cast("dict[object, object]", v).items():
                if type(k) is not str or (not k.isascii() and _utf8(k) is not k):
                    return False
                stack.append(x)
        elif t is list:
            stack.extend(cast("list[object]", v))
        elif t in _CHECKED and _bad_scalar(t, v):
            return False
    return True


def _safe(obj: object, depth: int, active: set[int]) -> JsonValue:
    """The careful (slow) path of to_jsonable: one value at a time, with cycles and depth bounded."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj) if obj.bit_length() <= _MAX_INT_BITS else f"<integer of {obj.bit_length()} bits>"
    if isinstance(obj, float):
        if math.isfinite(obj):
            return float(obj)
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, str):
        return _utf8(str(obj))
    if isinstance(obj, (bytes, bytearray)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(obj)} bytes>"
    if depth >= MAX_DEPTH:
        return "<nested too deeply>"
    key = id(obj)
    if key in active:
        return "<circular reference>"
    active.add(key)
    try:
        if isinstance(obj, dict):
            items = list(cast("dict[object, object]", obj).items())
            return {_key(k): _safe(v, depth + 1, active) for k, v in items}
        if isinstance(obj, (list, tuple, set, frozenset)):
            values = list(cast("Iterable[object]", obj))
            return [_safe(v, depth + 1, active) for v in values]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: _safe(getattr(obj, f.name, None), depth + 1, active) for f in dataclasses.fields(obj)}
    finally:
        active.discard(key)
    from pydantic_core import to_jsonable_python

    try:  # anything else pydantic knows (models, datetimes, enums, UUIDs...), cleaned in turn
        value = to_jsonable_python(obj, fallback=_fallback, serialize_unknown=True)
    except Exception:
        return _repr(obj)
    return value if _is_strict(value) else _safe(value, depth + 1, active)


def _key(k: object) -> str:
    if isinstance(k, str):
        return _utf8(str(k))
    if k is None or isinstance(k, (bool, int, float)):
        value = _safe(k, 0, set())
        return value if isinstance(value, str) else json.dumps(value)
    return _repr(k)
