"""A final answer that answers: the part of a tool's observation the question asks for.

A help for tiny local models, which otherwise paste the observation back (a whole file
for "which room is the meeting in?", an ISO timestamp for "what day of the week is it?").
``answer_from`` picks, without a model:

* a timestamp: the part asked for (the time, the weekday, the date, the year), in a short
  sentence;
* a JSON object: the fields the question names or whose value it says ("email", "phone";
  "sunny" -> sky: sunny), else every field, as "key: value";
* several lines or sentences: the one(s) sharing most words with the question, not
  counting the words the tool was called with (they are in every line about them);
* anything else short: the observation itself.

It returns None when it cannot tell (a long text no line of which matches): the model
then writes the answer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Mapping, Sequence

from pydantic import JsonValue

from ._tables import RELATED

__all__ = ["answer_from", "last_call_args", "stem_words"]

_STOP = {"the", "and", "what", "what's", "whats", "is", "are", "was", "this", "that", "with", "for", "from", "tell",
         "please", "give", "how", "much", "many", "can", "you", "your", "about", "into", "does", "say", "use", "me",
         "it", "of", "to", "in", "an", "a", "be", "at", "on", "by", "its", "now", "there", "which", "who", "when",
         "where", "do", "did", "has", "have", "according", "my", "i", "show", "find", "get", "any", "yet", "right",
         "today", "out", "up", "look", "check", "need", "like", "again", "some", "s"}
_ISO_TS = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?\s*$")
SHORT = 160  # characters: an observation this short with one line is the answer as it is


def _stem(w: str) -> str:
    if w.endswith("ies") and len(w) > 5:
        return w[:-3] + "y"  # "currencies" -> "currency"
    for suf in ("ing", "ed", "es", "s", "e"):
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[:-len(suf)]
    return w


def stem_words(text: str, related: bool = False) -> set[str]:
    """The content words of a text, stemmed ("arrived" -> "arriv"); with ``related``, also
    the topic words ``_tables.RELATED`` gives them ("cold" -> weather, temperature)."""
    raw = [w for w in re.findall(r"[a-z0-9]+", text.lower().replace("'s", "")) if w not in _STOP]
    out = {_stem(w) for w in raw if len(w) > 1}
    if related:
        for w in raw:
            out |= {_stem(r) for r in RELATED.get(w, ())}
    return out


def _timestamp_answer(question: str, date: str, hhmm: str, zone: str | None) -> str:
    q = question.lower()
    day = dt.date.fromisoformat(date)
    weekday = day.strftime("%A")
    asks_time = re.search(r"\b(time|hour|clock|o'clock)\b", q) is not None
    asks_weekday = re.search(r"\b(day of the week|weekday|what day|which day)\b", q) is not None
    asks_date = re.search(r"\b(date|today|day|month)\b", q) is not None
    asks_year = re.search(r"\byear\b", q) is not None
    if re.search(r"\bmonth\b", q) and not asks_time:
        return f"It is {day.strftime('%B %Y')} ({date})."
    offset = f" (UTC{zone})" if zone and zone not in ("Z", "+00:00") else (" UTC" if zone else "")
    if asks_time and (asks_date or asks_weekday):
        return f"It is {weekday}, {date}, {hhmm}{offset}."
    if asks_time:
        return f"It is {hhmm}{offset}."
    if re.search(r"\b(day of the week|weekday)\b", q):
        return f"It is {weekday}."
    if asks_weekday or asks_date:
        return f"It is {weekday}, {date}."
    if asks_year:
        return f"It is {day.year}."
    return f"It is {weekday}, {date}, {hhmm}{offset}."


def _pieces(observation: str) -> list[str]:
    lines = [ln.strip() for ln in observation.splitlines() if ln.strip()]
    if len(lines) > 1:
        return lines
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])", observation.strip()) if p.strip()]
    return parts


def _best(question: str, pieces: list[str], called: set[str]) -> list[str]:
    for related in (False, True):  # the question's own words first, then the topic words they point to
        qw = stem_words(question, related=related) - called
        scored = [(len(qw & stem_words(p)), i) for i, p in enumerate(pieces)]
        top = max((s for s, _ in scored), default=0)
        if top > 0:
            return [pieces[i] for s, i in scored if s == top]
    return []


def _field(key: str) -> str:
    return key.replace("_", " ").strip()


def answer_from(question: str, observation: str, call_args: Sequence[object] = ()) -> str | None:
    """The answer to ``question`` in ``observation`` (the last tool's result), or None
    when it cannot tell. ``call_args``: the values the tool was called with."""
    obs = observation.strip()
    if not obs:
        return None
    m = _ISO_TS.match(obs)
    if m:
        return _timestamp_answer(question, m.group(1), m.group(2), m.group(3))
    called = stem_words(" ".join(str(a) for a in call_args))
    if obs.startswith("{"):
        try:
            data: JsonValue = json.loads(obs)
        except ValueError:
            data = None
        if isinstance(data, dict) and data and all(not isinstance(v, (dict, list)) for v in data.values()):
            own = stem_words(question) - called
            # the fields the question names, or whose value it says ("is it sunny?" -> sky: sunny), else
            # all of them ("how warm is it?" gets the conditions too: "sunny?" may be answered by "rain")
            hits = [k for k in data if stem_words(f"{_field(str(k))} {data[k]}") & own]
            keys = hits or list(data)
            return "; ".join(f"{_field(str(k))}: {data[k]}" for k in keys)
    pieces = _pieces(obs)
    if len(pieces) <= 1:
        return obs if len(obs) <= 400 else None
    best = _best(question, pieces, called)
    if best and len(best) < len(pieces):
        return " ".join(best) if len(best) <= 2 else None
    return obs if len(obs) <= SHORT * 2 else None


def last_call_args(messages: Sequence[Mapping[str, object]]) -> list[JsonValue]:
    """The argument values of the last tool call in a planner conversation (JSON replies)."""
    for m in reversed(messages):
        if m.get("role") != "assistant":
            continue
        try:
            reply: JsonValue = json.loads(str(m.get("content") or ""))
        except ValueError:
            return []
        kwargs = reply.get("kwargs") if isinstance(reply, dict) else None
        return list(kwargs.values()) if isinstance(kwargs, dict) else []
    return []
