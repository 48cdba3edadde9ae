"""Folding a conversation memory's older turns into the session's summary (``Summarize`` on a chat).

A run whose prompt holds a ``ConversationMemory``'s history (``<CHAT_HISTORY>`` in the system
prompt) and outgrows the window asks a model to summarise the older turns of that history
(with the session's earlier summary folded in), stores the summary in the memory store before
anything else, and rewrites the history in the prompt as that summary plus the newest turns.
The store keeps it durably: the session reopened renders the summary and the turns after it,
and a run that finds a summary newer than its prompt's history (made by a run that crashed
before its journal said so, or by another process) uses it without a model call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from ..compaction import SUMMARY_INSTRUCTIONS, Message, Summarize, history_of, with_history
from ..tokens import estimate_text
from ..types import Usage
from ._core import ConversationMemory, DialogTurn, render_history, render_turns
from ._summary import SessionSummary, SummaryStore, after

__all__ = ["CHAT_SUMMARY_INSTRUCTIONS", "Folded", "fold_history"]

T = TypeVar("T")
Summarizer = Callable[[list[Message]], Awaitable[tuple[str | None, Usage | None, str | None, str | None]]]

CHAT_SUMMARY_INSTRUCTIONS = (
    "You compact a conversation between a user and an assistant. Summarize it for the assistant that will "
    "continue it: what the user said about themselves and asked for, the answers given (keep numbers, names "
    "and identifiers exactly), and anything still open. Be brief; write plain text, no preamble.")


@dataclass(slots=True)
class Folded:
    """What folding did: the new messages, the turns the summary covers (``first``..``upto - 1``),
    its text, and whether a model was asked (else the store's summary was used)."""

    messages: list[Message]
    first: int
    upto: int | None
    text: str | None
    called: bool
    model: str | None = None
    error: str | None = None
    usage: Usage | None = None


async def _value(v: T | Awaitable[T]) -> T:
    if isinstance(v, Awaitable):
        return await cast("Awaitable[T]", v)
    return v


def summary_request(prior: SessionSummary | None, fold: list[DialogTurn], s: Summarize) -> list[Message]:
    """The summary call's messages: the earlier summary and the turns to fold into it."""
    instructions = CHAT_SUMMARY_INSTRUCTIONS if s.instructions == SUMMARY_INSTRUCTIONS else s.instructions
    parts = [f"The summary of the conversation before these turns:\n{prior.text}"] if prior is not None else []
    parts.append("The turns to summarize:\n" + render_turns(fold))
    return [{"role": "system", "content": instructions}, {"role": "user", "content": "\n\n".join(parts)}]


def _fitting(prior: SessionSummary | None, fold: list[DialogTurn], s: Summarize, room: int) -> list[DialogTurn]:
    """The oldest of ``fold`` whose summary request fits ``room`` tokens (at least one turn)."""
    if not fold or estimate_text(str(summary_request(prior, fold, s)[1]["content"])) <= room:
        return fold
    lo, hi = 1, len(fold) - 1  # the most turns that fit: a binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_text(str(summary_request(prior, fold[:mid], s)[1]["content"])) <= room:
            lo = mid
        else:
            hi = mid - 1
    return fold[:lo]


async def fold_history(memory: object, msgs: list[Message], s: Summarize, summarize: Summarizer,
                       room: int) -> Folded | None:
    """Fold the older turns of ``memory``'s history in ``msgs`` into its session's summary, keeping
    the newest ``s.keep_last // 2`` turns (at least one) and folding no more than a summary request
    of ``room`` tokens holds (the rest waits for the next compaction). None: nothing to fold (no
    memory, a store that keeps no summaries, no history in the prompt, too few turns)."""
    if not isinstance(memory, ConversationMemory) or not isinstance(memory.store, SummaryStore):
        return None
    shown = history_of(msgs)
    if shown is None:
        return None
    store, sid = memory.store, memory.session_id
    prior = await _value(store.load_summary(sid))
    loaded: list[DialogTurn] = await _value(memory.history_turns())
    turns = loaded[after(prior, (t.order for t in loaded)):]
    keep = max(1, s.keep_last // 2)
    fold = _fitting(prior, turns[:-keep], s, room)
    if not fold:  # nothing more to fold; the stored summary may be newer than the prompt's history
        if prior is None:
            return None
        history = render_history(prior, turns)
        if history.strip() == shown:
            return None
        return Folded(with_history(msgs, history), 0, prior.upto, prior.text, called=False)
    text, usage, model, error = await summarize(summary_request(prior, fold, s))
    if not text:
        return Folded(msgs, fold[0].order, None, None, called=True, model=model, error=error, usage=usage)
    summary = SessionSummary(upto=fold[-1].order + 1, text=text, model=model)
    if not await _value(store.save_summary(sid, summary)):  # another run stored a newer one meanwhile: that one
        summary = await _value(store.load_summary(sid)) or summary
    history = render_history(summary, turns)
    return Folded(with_history(msgs, history), fold[0].order, summary.upto, summary.text, called=True, model=model,
                  usage=usage)
