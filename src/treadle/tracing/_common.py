"""Shared pieces of treadle.tracing: settings, secret scrubbing, attribute values (no opentelemetry import)."""

from __future__ import annotations

import os
import re
import sys
from typing import Iterable, Mapping, Protocol, runtime_checkable

from ..models._guards import is_dict, is_list, is_tuple
from ..types import Function

CONTENT_ENV = "TREADLE_TRACE_CONTENT"
TRACING_ENV = "TREADLE_TRACING"
SCOPE = "treadle"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
REQUEST_PARAMS = {  # model_kwargs read into attributes: an allow-list, so no key can leak from there
    "temperature": "gen_ai.request.temperature", "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens", "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k", "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty", "presence_penalty": "gen_ai.request.presence_penalty",
}
_KEY_VALUE = re.compile(  # api_key=…, "x-api-key": "…", Authorization: Bearer …, password: …
    r"(?i)((?:api[_-]?key|token|secret|passw(?:or)?d|authorization|credential)[\w-]*[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token)\s+)?)[^\s\"'\\,;}]{4,}")
_KEY_WORDS = ("key", "token", "secret", "passw", "authoriz", "credential")
_TOKEN = re.compile(  # key-shaped tokens on their own
    r"(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}|xox[abprs]-[A-Za-z0-9\-]{8,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*")
_TOKEN_MARKS = ("sk-", "pk-", "rk-", "gh", "xox", "aiza", "bearer")
_ERROR_KIND = re.compile(r"(?<![\w.])([A-Z][A-Za-z0-9_]*(?:Error|Exception|Exceeded|Timeout|Cancelled)[A-Za-z0-9_]*):")


def content_enabled() -> bool:
    """True when ``TREADLE_TRACE_CONTENT`` asks for prompts and tool data in spans."""
    return os.environ.get(CONTENT_ENV, "").strip().lower() in TRUE


def scrub(text: str) -> str:
    """Replace key-shaped tokens (``sk-…``, ``Bearer …``, the value of ``api_key=…``) by ``[REDACTED]``."""
    low = text.lower()  # cheap substring checks first: most text holds none of the markers
    if any(w in low for w in _KEY_WORDS) and ("=" in text or ":" in text):
        text = _KEY_VALUE.sub(r"\1[REDACTED]", text)
    if any(w in low for w in _TOKEN_MARKS):
        text = _TOKEN.sub("[REDACTED]", text)
    return text


def error_kind(message: str) -> str:
    m = _ERROR_KIND.search(message)
    return m.group(1) if m else "_OTHER"


def load_api():
    try:
        from opentelemetry import context, trace
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("treadle.tracing needs the OpenTelemetry API: pip install 'treadle[otel]'") from e
    return trace, context


def version() -> str:
    version: object = vars(sys.modules["treadle"]).get("__version__", "") if "treadle" in sys.modules else ""
    return str(version)



def looks_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in ("key", "token", "secret", "password", "auth"))


@runtime_checkable
class _BaseURL(Protocol):
    @property
    def base_url(self) -> object: ...


def server_of(model: object) -> tuple[str, int | None] | None:
    url = model.base_url if isinstance(model, _BaseURL) else None
    if not isinstance(url, str) or "//" not in url:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:
        return None


def _as_text(value: object) -> str:
    """A text part's ``content`` is a string in the conventions' schema."""
    if isinstance(value, str):
        return value
    import json

    from ..types import to_jsonable

    return json.dumps(to_jsonable(value), ensure_ascii=False)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


Part = dict[str, object]  # a message part of the GenAI conventions (its values: JSON, or turned into it)


def message_parts(m: Mapping[str, object]) -> dict[str, object]:
    """One planner chat message in the GenAI conventions' {role, parts} shape (the
    ``gen-ai-input-messages.json`` schema: a string role, parts typed as the schema types them)."""
    parts: list[Part] = []
    role = str(m.get("role") or "user")
    content = m.get("content")
    if role == "tool":
        parts.append({"type": "tool_call_response", "id": _opt_str(m.get("tool_call_id")), "response": content})
    elif content is not None:
        parts.append({"type": "text", "content": _as_text(content)})
    calls = m.get("tool_calls")
    for call in calls if is_list(calls) else ():
        call_d = call if is_dict(call) else {}
        fn = call_d.get("function")
        fn_d = fn if is_dict(fn) else {}
        parts.append({"type": "tool_call", "id": _opt_str(call_d.get("id")), "name": str(fn_d.get("name") or ""),
                      "arguments": fn_d.get("arguments")})
    return {"role": role, "parts": parts}


# the conventions' FinishReason values, from what providers report
_FINISH = {"stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "eos": "stop",
           "length": "length", "max_tokens": "length", "model_length": "length",
           "tool_calls": "tool_call", "tool_call": "tool_call", "tool_use": "tool_call", "function_call": "tool_call",
           "content_filter": "content_filter", "refusal": "content_filter", "safety": "content_filter",
           "error": "error"}


def finish_reason(reported: str | None, calls: list[Function] | None, error: str | None) -> str:
    """The output message's ``finish_reason`` (required by the GenAI conventions): the
    provider's own reason mapped onto the conventions' values (``stop``, ``length``,
    ``content_filter``, ``tool_call``, ``error``; an unknown one is kept as it is), else what
    the reply shows: ``error`` for a reply that could not be used, ``tool_call`` for tool
    calls, ``stop`` for the final answer."""
    if reported:
        low = str(reported).lower()
        return _FINISH.get(low, low)
    if error:
        return "error"
    if calls and any(not fn.is_final for fn in calls):
        return "tool_call"
    return "stop"


def output_parts(calls: Iterable[Function]) -> list[Part]:
    """The planner's parsed reply as output message parts: the final answer as text, each tool
    call as a ``tool_call`` part, a call's thought as a ``reasoning`` part before it."""
    parts: list[Part] = []
    for fn in calls:
        if fn.thought:
            parts.append({"type": "reasoning", "content": _as_text(fn.thought)})
        if fn.is_final:
            parts.append({"type": "text", "content": _as_text(fn.final_answer)})
        else:
            args: dict[str, object] = dict(fn.kwargs)
            if fn.args:
                args["*args"] = list(fn.args)
            parts.append({"type": "tool_call", "id": _opt_str(fn.id), "name": str(fn.name or ""),
                          "arguments": args})
    return parts


def cut(value: object, limit: int) -> object:
    """Strings inside plain data cut to ``limit`` characters (so the JSON around them stays valid)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"…[{len(value) - limit} more chars]"
    if is_dict(value):
        return {k: cut(v, limit) for k, v in value.items()}
    if is_list(value) or is_tuple(value):
        return [cut(v, limit) for v in value]
    return value
