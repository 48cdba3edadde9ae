"""Counting a request's tokens before it is sent, and the context windows of known models.

``count_request(model, request)`` is the count the context manager (``treadle.compaction``)
decides on: the model's own tokenizer when it has one offline (``LocalModel.count_tokens``:
llama.cpp's, on the exact prompt it would send), else ``estimate_request``: a calibrated
estimate of what an OpenAI-style provider counts (text split as a BPE pre-tokenizer splits
it, a long word costing more than one token, plus the per-message overhead), within 10 % of
the provider's count on the recorded requests of the HTTP bench (``tests/test_tokens.py``).
A run corrects the estimate by what the provider reports (``Calibration``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from ._plugs import fits
from .types import to_jsonable

if TYPE_CHECKING:
    from .models.base import ModelRequest
    from .types import FunctionDefinition

Message = dict[str, Any]

__all__ = ["Calibration", "KNOWN_WINDOWS", "MESSAGE_OVERHEAD", "REPLY_PRIMING", "Tokenizing", "context_window",
           "count_request",
           "estimate_messages", "estimate_request", "estimate_text", "message_tokens", "tools_tokens"]

# the pieces a GPT-style BPE pre-tokenizer splits text into (letters, up to 3 digits, punctuation, spaces)
_PIECE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+")
_CACHE: dict[str, int] = {}
_CACHE_MAX = 8192
MESSAGE_OVERHEAD = 4  # role and separators, per message (OpenAI's chat format)
REPLY_PRIMING = 3


# Costs of text in other scripts, fitted to o200k_base (GPT-4o and later) on a training set of texts in ten
# languages, JSON and math (tests/data/token_estimate_train.json) and checked on held-out texts
# (tests/data/token_estimate_heldout.json; the errors are in tests/test_tokens.py and docs/compaction.md).
CJK_PER_CHAR = 0.7  # Chinese, Japanese, Korean: tokens per character
ALPHABET_PER_CHAR = 0.3  # Cyrillic, Greek and other alphabets: tokens per letter
ACCENT_EXTRA = 1.0  # a Latin-script word: one more token per accented letter
SYMBOL_COST = 2.0  # a non-ASCII symbol (≈, ±, √, ·, ²): tokens each


def _cjk(c: str) -> bool:
    o = ord(c)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or (
        0xF900 <= o <= 0xFAFF)


def _latin(c: str) -> bool:
    return c.isascii() or 0xC0 <= ord(c) <= 0x24F  # Latin-1 and Latin Extended-A/B letters


def _word(piece: str) -> float:
    """A run of letters (after an optional space)."""
    size = len(piece)
    base = 1 if size <= 10 else (size + 5) // 6  # an English word of up to 10 characters is one token
    if piece.isascii():
        return base
    word = piece.lstrip()
    cjk = sum(1 for c in word if _cjk(c))
    if cjk:
        return cjk * CJK_PER_CHAR + (len(word) - cjk) * ALPHABET_PER_CHAR
    if all(_latin(c) for c in word):
        return base + ACCENT_EXTRA * sum(1 for c in word if not c.isascii())
    return max(1.0, len(word) * ALPHABET_PER_CHAR)


def estimate_text(text: str) -> int:
    """Estimated tokens of ``text`` (cached for texts that come back step after step)."""
    if not text:
        return 0
    cached = _CACHE.get(text)
    if cached is not None:
        return cached
    total = 0.0
    for m in _PIECE.finditer(text):  # (the costs were fitted to tiktoken's counts: tests/data)
        piece = m.group()
        c = piece[-1]
        if c.isalpha():
            total += _word(piece)
        elif c.isdigit() or c.isspace():
            total += 1
        else:  # a run of ASCII punctuation: one token per 4 characters; a non-ASCII symbol: SYMBOL_COST
            mark = piece.strip()
            ascii_n = sum(1 for ch in mark if ch.isascii())
            total += (1 if ascii_n <= 4 else (ascii_n + 3) // 4) if ascii_n else 0
            total += (len(mark) - ascii_n) * SYMBOL_COST
    n = int(total + 0.5)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[text] = n
    return n


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        parts = cast("list[object]", content)
        return "".join(str(cast("dict[str, object]", p).get("text", "")) for p in parts if isinstance(p, dict))
    return "" if content is None else json.dumps(to_jsonable(content), ensure_ascii=False)


def message_tokens(m: Message) -> int:
    """Estimated tokens of one chat message (content, tool calls, overhead)."""
    n = MESSAGE_OVERHEAD + estimate_text(_content_text(m.get("content")))
    calls: list[dict[str, object]] = m.get("tool_calls") or []
    for tc in calls:
        f = tc.get("function")
        if isinstance(f, dict):
            fd = cast("dict[str, object]", f)
            n += estimate_text(str(fd.get("name") or "")) + estimate_text(str(fd.get("arguments") or ""))
    return n


def estimate_messages(messages: list[Message]) -> int:
    return sum(message_tokens(m) for m in messages) + REPLY_PRIMING


def tools_tokens(tools: Sequence[FunctionDefinition] | None) -> int:
    """Estimated tokens of native tool definitions (as the provider receives them: JSON)."""
    if not tools:
        return 0
    body = [{"type": "function", "function": {"name": t.func_name, "description": t.func_desc or "",
                                              "parameters": t.func_parameters}} for t in tools]
    return estimate_text(json.dumps(body, separators=(",", ":"), ensure_ascii=False))


def estimate_request(request: ModelRequest) -> int:
    """Estimated prompt tokens of a ``ModelRequest`` for an OpenAI-style provider."""
    return estimate_messages(request.messages) + tools_tokens(request.tools)


@runtime_checkable
class Tokenizing(Protocol):
    """A model that counts a request's prompt tokens with its own tokenizer (``LocalModel``)."""

    def count_tokens(self, request: ModelRequest) -> int: ...


def count_request(model: object, request: ModelRequest) -> tuple[int, bool]:
    """(tokens, exact): the model's own count when it has a tokenizer (``count_tokens``), else the estimate."""
    if fits(model, Tokenizing):
        try:
            return model.count_tokens(request), True
        except Exception:  # no tokenizer after all (the server is not loaded, an old llama.cpp): estimate
            pass
    return estimate_request(request), False


@dataclass(slots=True)
class Calibration:
    """The ratio of the provider's reported prompt tokens to the count made before sending,
    learned over a run's replies (a running mean, starting at 1)."""

    ratio: float = 1.0
    samples: int = 0

    def learn(self, counted: int, reported: int) -> None:
        if counted <= 0 or reported <= 0:
            return
        r = reported / counted
        if not 0.25 <= r <= 4.0:  # a provider that reports something else (cached tokens, a fake): ignored
            return
        self.samples += 1
        self.ratio += (r - self.ratio) / min(self.samples, 8)

    def apply(self, counted: int) -> int:
        return int(counted * self.ratio + 0.5)


# context windows (prompt + reply tokens) of common models, by name prefix (the longest match wins)
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000, "gpt-4o-mini": 128_000, "gpt-4-turbo": 128_000, "gpt-4": 8_192, "gpt-4-32k": 32_768,
    "gpt-4.1": 1_047_576, "gpt-4.5": 128_000, "gpt-5": 400_000, "gpt-3.5-turbo": 16_385, "o1": 200_000,
    "o1-mini": 128_000, "o3": 200_000, "o3-mini": 200_000, "o4-mini": 200_000, "claude-": 200_000,
    "gemini-1.5": 1_048_576, "gemini-2": 1_048_576, "mistral-large": 128_000, "mistral-small": 32_000,
    "llama-3.1": 131_072, "llama-3.2": 131_072, "llama-3.3": 131_072, "llama3": 8_192, "qwen2.5": 32_768,
    "deepseek-chat": 65_536, "deepseek-reasoner": 65_536, "smollm2": 8_192,
}


@runtime_checkable
class _Windowed(Protocol):
    context_window: object


@runtime_checkable
class _Sized(Protocol):  # a LocalModel
    n_ctx: object


@runtime_checkable
class _ModelNamed(Protocol):  # an SDK client's model id
    model: object


@runtime_checkable
class _Named(Protocol):
    name: object


def _window(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def context_window(model: object) -> int | None:
    """The model's context window in tokens: its ``context_window`` (or a local model's ``n_ctx``),
    else the table above by model name, else None (unknown)."""
    own = (_window(model.context_window) if fits(model, _Windowed) else None) or (
        _window(model.n_ctx) if fits(model, _Sized) else None)
    if own is not None:
        return own
    name = model.model if fits(model, _ModelNamed) and isinstance(model.model, str) else None
    if name is None and fits(model, _Named) and isinstance(model.name, str):
        name = model.name
    if name is None:
        return None
    name = name.lower().rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    best = None
    for prefix, window in KNOWN_WINDOWS.items():
        if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, window)
    return best[1] if best else None
