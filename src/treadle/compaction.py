"""Context compaction: what is done to a run's messages when they near the model's window.

``Agent(context=Compaction(...))`` configures it; ``Agent(context=None)`` turns it off. By
default (``context="auto"``) it runs for the embedded model at 75 % of its window, and for
any model whenever a request would otherwise not fit: the estimate says it would exceed a
known window, or the provider refused it as too long (the request is then compacted and
sent again, once). Strategies run in order until the request is under ``target`` of the window:

* ``ClearToolResults``: old tool results give way to a short stub; the call stays.
* ``Summarize``: the older steps become a summary written by a model (the agent's own or
  another), appended to the question; the newest messages stay as they are.
* ``SlidingWindow``: the oldest steps are dropped, never a tool call without its results.

Every compaction is an ``agent.compaction`` event (``CompactionInfo``): journaled with the
summary's text, so a resumed or replayed run rebuilds the messages the model saw without
asking for the summary again. See docs/compaction.md. The loop's side is ``treadle._context``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Union, cast, runtime_checkable

from pydantic import TypeAdapter

from ._strict import strict
from .errors import JournalError, UserError
from .memory._summary import HISTORY_SUMMARY_CLOSE, HISTORY_SUMMARY_OPEN
from .types import OBSERVATION_PREFIX, Usage

if TYPE_CHECKING:
    from .models.base import ModelClient, ModelRequest, ModelResponse

__all__ = ["COMPACTION_INFO", "ClearToolResults", "Compaction", "CompactionInfo", "Message", "SUMMARY_INSTRUCTIONS",
           "SlidingWindow", "Strategy", "Summarize", "apply_layout", "layout_of"]

Message = dict[str, Any]
Counter = Callable[[list[Message]], int]

SUMMARY_INSTRUCTIONS = (
    "You compact an agent's working context. Summarize the conversation below for the agent that will "
    "continue it: the facts and results found so far (keep numbers, names, file paths and identifiers "
    "exactly), what was tried and failed, and what remains to do. Be brief; write plain text, no preamble.")
SUMMARY_OPEN = "<SUMMARY_OF_EARLIER_STEPS>"
SUMMARY_CLOSE = "</SUMMARY_OF_EARLIER_STEPS>"
DROPPED_NOTE = "[{n} earlier messages were dropped to fit the context window]"


def _check_int(name: str, v: object, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise UserError(f"{name} must be an integer of at least {low}, not {v!r}")


@dataclass(frozen=True, slots=True)
class ClearToolResults:
    """Replace the content of tool results older than the ``keep_last`` newest with ``stub``
    (results shorter than ``min_chars`` stay). The call that asked for it stays as it was."""

    keep_last: int = 3
    min_chars: int = 200
    stub: str = "[tool result cleared to save context: {chars} characters]"

    def __post_init__(self) -> None:
        _check_int("ClearToolResults.keep_last", self.keep_last, 0)
        _check_int("ClearToolResults.min_chars", self.min_chars, 0)


@dataclass(frozen=True, slots=True)
class Summarize:
    """Summarize the steps before the ``keep_last`` newest messages with ``model`` (None: the
    agent's own; a ``ModelClient`` or a model string, e.g. a cheaper one). The summary (at most
    ``max_tokens``) joins the question; an earlier summary is folded into the new one."""

    model: ModelClient | str | None = None
    keep_last: int = 6
    max_tokens: int = 512
    instructions: str = SUMMARY_INSTRUCTIONS

    def __post_init__(self) -> None:
        _check_int("Summarize.keep_last", self.keep_last, 0)
        _check_int("Summarize.max_tokens", self.max_tokens, 16)
        if self.model is not None and not isinstance(cast(object, self.model), (str, _Requesting)):
            raise UserError(f"Summarize.model must be a ModelClient or a model string, not {self.model!r}")


@dataclass(frozen=True, slots=True)
class SlidingWindow:
    """Drop the oldest steps (after the question) until the request fits, keeping at least
    the ``keep_last`` newest messages; a tool call is never separated from its results."""

    keep_last: int = 2

    def __post_init__(self) -> None:
        _check_int("SlidingWindow.keep_last", self.keep_last, 0)


@runtime_checkable
class _Requesting(Protocol):
    """What a summary model must have (``ModelClient.request``)."""

    def request(self, request: ModelRequest) -> Awaitable[ModelResponse]: ...


Strategy = Union[ClearToolResults, Summarize, SlidingWindow]
DEFAULT_STRATEGIES: tuple[Strategy, ...] = (ClearToolResults(), Summarize(), SlidingWindow())


@dataclass(frozen=True, slots=True)
class Compaction:
    """How an agent's context is kept within the model's window.

    Args:
        window: the context window in tokens (None: the model's, when known: its
            ``context_window``/``n_ctx``, else ``treadle.tokens.KNOWN_WINDOWS`` by name).
        threshold: compact when a request's tokens exceed this fraction of the window less
            ``reserve`` (1.0: only when it would not fit).
        target: compact down to this fraction of it.
        reserve: tokens kept free for the reply (None: the request's ``max_tokens``, else
            an eighth of the window, at most 1024).
        strategies: applied in order until the request is under the target.
    """

    window: int | None = None
    threshold: float = 0.8
    target: float = 0.5
    reserve: int | None = None
    strategies: tuple[Strategy, ...] = field(default=DEFAULT_STRATEGIES)

    def __post_init__(self) -> None:
        if self.window is not None:
            _check_int("Compaction.window", self.window, 256)
        if self.reserve is not None:
            _check_int("Compaction.reserve", self.reserve, 0)
        for name, v in (("threshold", cast(object, self.threshold)), ("target", cast(object, self.target))):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise UserError(f"Compaction.{name} must be a number in (0, 1], not {v!r}")
        if self.target > self.threshold:
            raise UserError(f"Compaction.target ({self.target}) must not exceed its threshold ({self.threshold})")
        strategies = cast(object, self.strategies)
        if not isinstance(strategies, tuple):
            if not isinstance(strategies, list):
                raise UserError("Compaction.strategies must be a list or tuple of ClearToolResults, Summarize, "
                                f"SlidingWindow; not {strategies!r}")
            object.__setattr__(self, "strategies", tuple(cast("list[object]", strategies)))
        for s in cast("tuple[object, ...]", self.strategies):
            if not isinstance(s, (ClearToolResults, Summarize, SlidingWindow)):
                raise UserError(f"unknown compaction strategy {s!r} (use ClearToolResults, Summarize, SlidingWindow)")

    def reserve_for(self, window: int, model_kwargs: dict[str, Any]) -> int:
        if self.reserve is not None:
            return self.reserve
        mt = model_kwargs.get("max_tokens")
        if isinstance(mt, int) and not isinstance(mt, bool) and 0 < mt < window // 2:
            return mt
        return min(window // 8, 1024)


for _cls in (ClearToolResults, Summarize, SlidingWindow, Compaction):  # a typo is an error naming the fix
    _cls.__init__ = strict()(_cls.__init__)  # type: ignore[method-assign]


@dataclass(slots=True)
class CompactionInfo:
    """The data of an ``agent.compaction`` event: what was replaced by what.

    ``layout`` rebuilds the new messages from the old ones: each entry is the index of a
    message kept as it was, or a new message (a stub, the question with its summary).
    ``replaced`` says it in words. Tokens are counted as the run counts them (see
    ``treadle.tokens``); ``usage`` is the summary call's (also in the run's usage)."""

    step: int
    reason: Literal["threshold", "overflow", "refused"]
    strategies: list[str]
    tokens_before: int
    tokens_after: int
    window: int
    messages_before: int
    messages_after: int
    layout: list[int | Message]
    replaced: list[str] = field(default_factory=list[str])
    summary: str | None = None
    summary_model: str | None = None
    summary_error: str | None = None
    usage: Usage | None = None
    exact: bool = False  # tokens counted by the model's tokenizer (else estimated)
    started_at: float = 0.0  # when the compaction began (its summary call's time: until the event)
    history_upto: int | None = None  # the conversation memory's turns before this one are in the session's summary


COMPACTION_INFO: TypeAdapter[CompactionInfo] = TypeAdapter(CompactionInfo)  # a journaled event's data, typed


# ---------------------------------------------------------------------------- the pure parts
def is_result(m: Message) -> bool:
    """A tool result: a native ``tool`` message, or a JSON-mode observation."""
    if m.get("role") == "tool":
        return True
    c = m.get("content")
    return m.get("role") == "user" and isinstance(c, str) and c.startswith(OBSERVATION_PREFIX)


def head_size(messages: list[Message]) -> int:
    """The messages that always stay: the system prompt and the question (the first user message)."""
    for i, m in enumerate(messages):
        if m.get("role") == "user":
            return i + 1
    return len(messages)


def step_starts(messages: list[Message], head: int) -> list[int]:
    """Where a step may begin after the head: an assistant message (its results follow it)."""
    return [i for i in range(head, len(messages)) if messages[i].get("role") == "assistant"]


def clear_results(messages: list[Message], s: ClearToolResults) -> tuple[list[Message], int]:
    results = [i for i, m in enumerate(messages) if is_result(m)]
    old = results[:-s.keep_last] if s.keep_last else results
    out = list(messages)
    n = 0
    for i in old:
        content = messages[i].get("content")
        text = content if isinstance(content, str) else str(content)
        if len(text) < s.min_chars or text.endswith("characters]"):
            continue
        stub = s.stub.format(chars=len(text))
        if messages[i].get("role") == "user":
            stub = OBSERVATION_PREFIX + stub
        out[i] = {**messages[i], "content": stub}
        n += 1
    return (out if n else messages), n


def summary_span(messages: list[Message], keep_last: int) -> tuple[int, int] | None:
    """The messages a summary replaces: after the head, up to the step that begins the
    ``keep_last`` newest messages (None: nothing to summarize)."""
    head = head_size(messages)
    starts = step_starts(messages, head)
    limit = len(messages) - keep_last
    cut = max((i for i in starts if i <= limit), default=None)
    if cut is None or cut <= head:
        return None
    return head, cut


def split_question(content: str) -> tuple[str, str | None]:
    """The question as asked, and the summary already appended to it (None)."""
    at = content.rfind("\n\n" + SUMMARY_OPEN)
    if at < 0 or not content.rstrip().endswith(SUMMARY_CLOSE):
        return content, None
    summary = content[at + 2 + len(SUMMARY_OPEN):content.rstrip().rfind(SUMMARY_CLOSE)]
    return content[:at], summary.strip()


def transcript(messages: list[Message]) -> str:
    lines: list[str] = []
    for m in messages:
        for tc in m.get("tool_calls") or ():
            f = cast("dict[str, object]", tc.get("function") or {})
            lines.append(f"assistant called {f.get('name')}({f.get('arguments')})")
        c = m.get("content")
        if c:
            lines.append(f"{'tool result' if m.get('role') == 'tool' else m.get('role')}: {c}")
    return "\n".join(lines)


def summary_messages(messages: list[Message], span: tuple[int, int], s: Summarize) -> list[Message]:
    """The summary request's messages."""
    head = messages[span[0] - 1]
    question, previous = split_question(str(head.get("content") or ""))
    parts = [f"The task: {question}"]
    if previous:
        parts.append(f"The summary of the steps before these:\n{previous}")
    parts.append("The steps to summarize:\n" + transcript(messages[span[0]:span[1]]))
    return [{"role": "system", "content": s.instructions}, {"role": "user", "content": "\n\n".join(parts)}]


def with_summary(messages: list[Message], span: tuple[int, int], summary: str) -> list[Message]:
    head = messages[span[0] - 1]
    question, _ = split_question(str(head.get("content") or ""))
    merged = {**head, "content": f"{question}\n\n{SUMMARY_OPEN}\n{summary.strip()}\n{SUMMARY_CLOSE}"}
    return [*messages[:span[0] - 1], merged, *messages[span[1]:]]


def _fewest(n: int, make: Callable[[int], list[Message]], count: Counter, budget: int) -> tuple[list[Message], int]:
    """The candidate ``make(i)`` (i = 1..n, each dropping more than the one before) with the
    smallest ``i`` that fits ``budget`` (else ``make(n)``): a binary search, the count being
    monotone in ``i``, so a long history costs a few counts, not one per turn."""
    lo, hi = 1, n
    found: tuple[list[Message], int] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = make(mid)
        if count(candidate) <= budget:
            found, hi = (candidate, mid), mid - 1
        else:
            lo = mid + 1
    return found if found is not None else (make(n), n)


def slide(messages: list[Message], count: Counter, budget: int, s: SlidingWindow) -> tuple[list[Message], int]:
    """Drop the oldest steps until ``count`` is within ``budget`` (a note joins the question);
    returns the messages and how many were dropped."""
    head = head_size(messages)
    limit = len(messages) - s.keep_last
    cuts = [c for c in step_starts(messages, head) if head < c <= limit]
    if not cuts:
        return messages, 0
    q = messages[head - 1]
    question, summary = split_question(str(q.get("content") or ""))

    def make(i: int) -> list[Message]:
        cut = cuts[i - 1]
        note = DROPPED_NOTE.format(n=cut - head)
        text = question + "\n\n" + note + (f"\n\n{SUMMARY_OPEN}\n{summary}\n{SUMMARY_CLOSE}" if summary else "")
        return [*messages[:head - 1], {**q, "content": text}, *messages[cut:]]

    out, i = _fewest(len(cuts), make, count, budget)
    return out, cuts[i - 1] - head


_TURN = re.compile(r"(?m)^User:$")
HISTORY_OPEN, HISTORY_CLOSE = "<CHAT_HISTORY>", "</CHAT_HISTORY>"
TURNS_NOTE = "[{n} earlier turns of the conversation were dropped to fit the context window]"


def slide_history(messages: list[Message], count: Counter, budget: int) -> tuple[list[Message], int]:
    """Drop the oldest turns of the conversation memory's ``<CHAT_HISTORY>`` in the system prompt
    until ``count`` is within ``budget`` (the newest turn stays); returns the messages and how many turns went."""
    system = messages[0] if messages and messages[0].get("role") == "system" else None
    text = str(system.get("content") or "") if system is not None else ""
    start, end = text.find(HISTORY_OPEN), text.rfind(HISTORY_CLOSE)
    if system is None or start < 0 or end < start:
        return messages, 0
    body = text[start + len(HISTORY_OPEN):end]
    close = body.find(HISTORY_SUMMARY_CLOSE) if body.lstrip().startswith(HISTORY_SUMMARY_OPEN) else -1
    after = close + len(HISTORY_SUMMARY_CLOSE) if close >= 0 else 0  # the session's summary of its older turns stays
    starts = [m.start() for m in _TURN.finditer(body, after)]
    cuts = starts[1:]
    if not cuts:
        return messages, 0
    summary = body[:starts[0]].strip()

    def make(n: int) -> list[Message]:
        kept = "\n".join(x for x in (summary, TURNS_NOTE.format(n=n), body[cuts[n - 1]:].strip()) if x)
        return [{**system, "content": text[:start + len(HISTORY_OPEN)] + f"\n{kept}\n" + text[end:]}, *messages[1:]]

    return _fewest(len(cuts), make, count, budget)


def history_of(messages: list[Message]) -> str | None:
    """The conversation memory's ``<CHAT_HISTORY>`` in the system prompt (None: there is none)."""
    system = messages[0] if messages and messages[0].get("role") == "system" else None
    text = str(system.get("content") or "") if system is not None else ""
    start, end = text.find(HISTORY_OPEN), text.rfind(HISTORY_CLOSE)
    return text[start + len(HISTORY_OPEN):end].strip() if 0 <= start < end else None


def with_history(messages: list[Message], history: str) -> list[Message]:
    """The messages with ``history`` as the system prompt's ``<CHAT_HISTORY>`` (there must be one)."""
    text = str(messages[0].get("content") or "")
    start, end = text.find(HISTORY_OPEN), text.rfind(HISTORY_CLOSE)
    content = f"{text[:start + len(HISTORY_OPEN)]}\n{history.strip()}\n{text[end:]}"
    return [{**messages[0], "content": content}, *messages[1:]]


def layout_of(old: list[Message], new: list[Message]) -> list[int | Message]:
    """``new`` as indexes of the ``old`` messages it kept (the same objects) and new messages."""
    where = {id(m): i for i, m in enumerate(old)}
    return [where.get(id(m), m) for m in new]


def apply_layout(old: list[Message], layout: Sequence[object], expected: int) -> list[Message]:
    """The messages a journaled compaction made of ``old`` (which must hold ``expected`` messages)."""
    if len(old) != expected:
        raise JournalError(f"cannot rebuild a journaled compaction: it was made of {expected} messages, "
                           f"the journal rebuilds {len(old)}")
    out: list[Message] = []
    for x in layout:
        if isinstance(x, int) and not isinstance(x, bool):
            if not 0 <= x < len(old):
                raise JournalError(f"a journaled compaction keeps message {x} of {len(old)}")
            out.append(old[x])
        elif isinstance(x, dict):
            out.append(dict(cast("Message", x)))
        else:
            raise JournalError(f"a journaled compaction holds {x!r} where a message or an index belongs")
    return out
