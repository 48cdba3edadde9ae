"""Answers and replies: the answer type's schema, a reply's parsing into Functions, an answer's
conversion to the answer type, an observation's rendering for the model. Pure functions, no I/O
(the planner, the loop and the journal's resume use them)."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING, Any, cast

from .errors import AnswerConversionError, OutputParseError
from .models.base import AnswerFormat

if TYPE_CHECKING:
    from pydantic import TypeAdapter
from .types import (
    FINISH_TOOL,
    Function,
    _utf8,  # pyright: ignore[reportPrivateUsage]  (shared with treadle.tracing, not public)
    to_jsonable,
)

__all__ = ["MAX_PARSE_CHARS", "answer_schema", "convert_answer", "function_from_obj", "parse_function",
           "render_observation"]


MAX_PARSE_CHARS = 200_000


TEXT_TYPES = (str, None, Any)


@functools.lru_cache(maxsize=256)
def _adapter(tp: Any) -> TypeAdapter[object]:  # Any: a type form (pydantic takes any)
    from pydantic import TypeAdapter

    return TypeAdapter(tp)


def answer_schema(tp: object) -> dict[str, Any]:
    """JSON schema of the answer type (cached per type; callers must not mutate it)."""
    try:
        return _answer_schema(tp)
    except TypeError:  # unhashable type object
        return _answer_schema.__wrapped__(tp)


@functools.lru_cache(maxsize=256)
def _answer_schema(tp: object) -> dict[str, Any]:
    if tp is None or tp is Any:
        return {}
    try:
        return _adapter(tp).json_schema()
    except Exception:
        return {"description": tp.__name__ if isinstance(tp, type) else str(tp)}


_TRUE = {"true", "yes", "1"}


def _truthy(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in _TRUE
    return v is True or v == 1


def loads_lenient(text: str) -> object:
    import json_repair

    try:
        return json.loads(text)
    except (ValueError, TypeError):
        pass
    return json_repair.loads(text[:MAX_PARSE_CHARS])


def _json_object(value: object) -> dict[str, object] | None:
    """A decoded JSON object (its keys are strings), or None for any other value."""
    return cast("dict[str, object]", value) if isinstance(value, dict) else None


def function_from_obj(value: object) -> Function:
    """Turn a decoded JSON value into a Function, or raise OutputParseError."""
    if isinstance(value, list):
        value = next((x for x in cast("list[object]", value) if isinstance(x, dict)), None)
    obj = _json_object(value)
    if not obj:
        raise OutputParseError("the reply holds no JSON object")
    thought = obj.get("thought")
    if thought is not None and not isinstance(thought, str):
        thought = json.dumps(to_jsonable(thought))
    name = obj.get("name", obj.get("tool", obj.get("function")))
    inner = _json_object(name)
    if inner is not None:  # {"function": {"name": ..., "arguments": ...}}
        obj = {**obj, **inner}
        name = obj.get("name")
    raw_kwargs = obj.get("kwargs", obj.get("arguments", obj.get("parameters")))
    if isinstance(raw_kwargs, str):
        raw_kwargs = loads_lenient(raw_kwargs) if raw_kwargs.strip() else {}
    kwargs = _json_object({} if raw_kwargs is None else raw_kwargs)
    if kwargs is None:
        raise OutputParseError(f"'kwargs' must be a JSON object, got {type(raw_kwargs).__name__}")
    raw_args = obj.get("args") or []
    args: list[object] = cast("list[object]", raw_args) if isinstance(raw_args, list) else [raw_args]
    if _truthy(obj.get("_is_answer_final")):
        return Function(thought=thought, name=name if isinstance(name, str) else "", kwargs=kwargs,
                        _is_answer_final=True, _answer=obj.get("_answer", obj.get("answer")))
    if isinstance(name, str) and name.strip():
        return Function(thought=thought, name=name, args=args, kwargs=kwargs, _is_answer_final=False)
    for key in ("_answer", "answer", "final_answer"):
        if key in obj:
            return Function(thought=thought, _is_answer_final=True, _answer=obj[key])
    raise OutputParseError("the JSON object has no tool 'name' and is not a final answer")


def parse_function(text: str | None) -> Function:
    """Parse a model's reply text (JSON mode) into a Function.

    Tolerates code fences, prose around the object, single quotes, missing closing
    braces. Raises OutputParseError with a message meant for the model.
    """
    if not text or not text.strip():
        raise OutputParseError("the reply was empty; reply with one JSON object")
    try:
        obj = loads_lenient(text)
    except Exception as e:  # json_repair is robust, but never let it crash the run
        raise OutputParseError(f"the reply is not valid JSON ({type(e).__name__})") from None
    try:
        return function_from_obj(obj)
    except OutputParseError as e:
        snippet = text if len(text) <= 200 else text[:200] + "…"
        raise OutputParseError(f"{e}. Reply was: {snippet}") from None


def convert_answer(value: object, tp: object) -> object:
    """Convert the model's final answer to the agent's answer type.

    pydantic models and dataclasses from a dict or a JSON string, builtins and typing
    generics through pydantic's lax validation. Falsy answers (0, "", False) are valid.
    Raises AnswerConversionError with a message meant for the model.
    """
    if tp is None or tp is Any:
        return value
    if tp is str:
        if value is None:
            raise AnswerConversionError("the final answer is missing")
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(to_jsonable(value), ensure_ascii=False)
        return str(value)
    from pydantic import ValidationError

    adapter = _adapter(tp)
    if isinstance(value, str):
        try:
            return adapter.validate_json(value)
        except ValidationError:
            pass
        try:
            decoded = loads_lenient(value)
        except Exception:
            decoded = None
        if decoded not in (None, "") and not isinstance(decoded, str):
            try:
                return adapter.validate_python(decoded)
            except ValidationError:
                pass
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'answer'}: {x['msg']}"
                         for x in e.errors(include_url=False))
        name = tp.__name__ if isinstance(tp, type) else str(tp)
        raise AnswerConversionError(f"the final answer does not fit the answer type {name}: {errs}") from None


def render_observation(obs: object, limit: int) -> str:
    if isinstance(obs, str):
        text = obs
    elif obs is None:
        text = "None"
    elif isinstance(obs, (bytes, bytearray, memoryview)):
        text = f"<{len(cast('bytes', obs))} bytes of binary data>"
    else:
        try:
            text = json.dumps(obs, ensure_ascii=False)
        except Exception:  # not JSON (a set, bytes inside), a cycle, too deep, an int too long to print...
            text = json.dumps(to_jsonable(obs), ensure_ascii=False)  # never fails: to_jsonable is strict
    text = _utf8(text)  # lone surrogates would make the request to the model fail to encode
    if len(text) > limit:
        text = text[:limit] + f"… [truncated {len(text) - limit} characters]"
    return text


def fn_json(fn: Function) -> str:
    d: dict[str, object] = {}
    if fn.thought:
        d["thought"] = fn.thought
    d["name"] = fn.name
    d["kwargs"] = fn.kwargs
    return json.dumps(to_jsonable(d), ensure_ascii=False)


def answer_format_of(tp: object) -> AnswerFormat:
    from .models._schema import compact_schema

    schema: dict[str, Any] = compact_schema(answer_schema(tp))
    named = isinstance(tp, type) and tp.__module__ != "builtins"
    name = "".join(c for c in tp.__name__ if c.isalnum() or c in "_-")[:64] if isinstance(tp, type) and named else ""
    name = name or "answer"
    if schema.get("type") == "object" and "properties" in schema:
        return AnswerFormat(name=name, schema=schema)
    inner = dict(schema)
    defs = inner.pop("$defs", None)
    wrapper: dict[str, object] = {"type": "object", "properties": {"answer": inner}, "required": ["answer"],
                               "additionalProperties": False}
    if defs is not None:  # "#/$defs/..." references resolve from the root
        wrapper["$defs"] = defs
    return AnswerFormat(name=name, schema=wrapper, wrapped=True)


def unwrap_answer(text: str) -> object:
    """The answer inside a wrapped structured reply ``{"answer": ...}``; the text as it is when it
    is not one (the answer's validation then asks the model again)."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = loads_lenient(text)
        except Exception:
            return text
    obj = _json_object(value)
    if obj is not None and "answer" in obj:
        return obj["answer"]
    return text


def normalise_call(fn: Function) -> Function:
    if isinstance(fn.kwargs, str):
        raw = fn.kwargs
        try:
            decoded = _json_object(loads_lenient(raw) if raw.strip() else {})
        except Exception:
            decoded = None
        if decoded is None:
            raise OutputParseError(f"the arguments of {fn.name} are not a JSON object: {str(raw)[:200]}")
        fn = dataclasses.replace(fn, kwargs=decoded)
    # the seed's field names (treadle.types.Function): set in place, as the seed's planner does
    if fn.name == FINISH_TOOL and fn._is_answer_final is None:  # pyright: ignore[reportPrivateUsage]
        answer = fn.final_answer
        fn._is_answer_final = True  # pyright: ignore[reportPrivateUsage]
        fn._answer = answer  # pyright: ignore[reportPrivateUsage]
    return fn
