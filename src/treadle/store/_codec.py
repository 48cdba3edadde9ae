"""How the bundled stores lay journal entries out in rows, and read them back.

Two savings, both invisible to readers (``RunStore.events`` returns the same entries and
payloads as if each event had its own row, written in full):

- **One row per commit.** The entries of one commit that carry no ``key`` go in one row
  (name ``GROUP``, seq of the first entry, payload a JSON array of ``[seq, name, created,
  payload]``, ``created`` the entry's time: whole microseconds, an int, for the Journal's
  entries; seconds, a float, for other writers' and in schema 3): one index entry and one
  row header instead of four or five per step. Entries with a key (approval decisions) keep
  a row of their own, so the unique ``(run_id, key)`` index still makes the first decision
  win. The Journal hands its commits already packed (it writes each event as its entry as
  the event comes); ``pack`` packs other writers' entries.
- **No payload written twice.** A store that sets ``compact_payloads`` is handed (by the
  Journal) an ``agent.step_complete`` without its ``function`` when it is the step's
  ``action`` (the same call), and an ``agent.execution_complete`` without its
  ``step_history`` when the steps are exactly the run's journaled ``agent.step_complete``
  events (``STEPS_FROM_JOURNAL`` says so). ``expand`` puts both back.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterable
from typing import Any

from pydantic_core import to_json

from .. import events as ev
from ..errors import JournalError
from ..types import _flat
from ._encode import TAGS, whole
from .base import JournalEntry

__all__ = ["GROUP", "STEPS_FROM_JOURNAL", "Buffered", "dumps", "expand", "json_name", "pack", "payload_bytes",
           "payload_text"]

GROUP = "treadle.entries"
# the key an execution_complete's result carries instead of its step_history (value: the step count)
STEPS_FROM_JOURNAL = "treadle_steps_from_journal"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """JSON text as the stores write it (compact, UTF-8 kept)."""
    if type(value) is dict and _flat(value):  # the usual run row's field: pydantic's encoder, a quarter of the time
        return to_json(value).decode()
    return _ENCODER.encode(value)


def payload_text(payload: Any) -> str:
    """A payload as JSON text (the journal hands bytes; other writers may hand str or data)."""
    if type(payload) is bytes:
        return payload.decode()
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload).decode()
    if isinstance(payload, str):
        return payload
    return dumps(payload)


def payload_bytes(payload: Any) -> bytes:
    """A payload as JSON bytes."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    return payload_text(payload).encode()


_NAMES: dict[str, bytes] = {}  # event names as JSON strings


def json_name(name: str) -> bytes:
    """An event name as a JSON string (cached)."""
    out = _NAMES.get(name)
    if out is None:
        out = json.dumps(name).encode()
        if len(_NAMES) < 1000:
            _NAMES[name] = out
    return out


def pack(entries: list[JournalEntry]) -> list[JournalEntry]:
    """``entries`` (one commit's, one run's) as rows: each stretch of entries without a key
    whose seqs follow one another (n, n+1, …) becomes one ``GROUP`` row. A group's row has
    its first seq, so a second writer continuing the run from the same point collides with
    it as it would with a row of its own (``JournalConflictError``)."""
    if len(entries) < 2:
        return entries
    out: list[JournalEntry] = []
    group: list[JournalEntry] = []
    for e in entries:
        if e.key is None and e.name != GROUP and (not group or e.seq == group[-1].seq + 1):
            group.append(e)
            continue
        _flush_exact(group, out)
        group = []
        if e.key is None and e.name != GROUP:
            group.append(e)
        else:
            out.append(e)
    _flush_exact(group, out)
    return out


def _flush_exact(group: list[JournalEntry], out: list[JournalEntry]) -> None:
    """A writer's own entries: their times kept as they are (seconds, a float)."""
    if len(group) == 1:
        out.append(group[0])
    elif group:
        first = group[0]
        body = b",".join([b"[%d,%s,%r,%s]" % (e.seq, json_name(e.name),
                                               float(e.created_at) if math.isfinite(e.created_at) else 0.0,
                                               payload_bytes(e.payload)) for e in group])
        out.append(JournalEntry(first.run_id, first.seq, GROUP, b"[" + body + b"]", first.created_at))


# a Journal's buffered entry for a store that is not compact: seq, name, the event's JSON, created_at in µs
Buffered = tuple[int, str, bytes, int]


def expand(run_id: str, rows: Iterable[tuple[int, str, Any, float, str | None]]) -> list[JournalEntry]:
    """The entries of a run's rows (``seq, name, payload, created_at, key``; the payload as
    JSON text, or already parsed), with every compacted payload made whole again."""
    out: list[JournalEntry] = []
    compacted = False
    for seq, name, payload, created_at, key in rows:
        data = json.loads(payload) if isinstance(payload, (str, bytes)) else payload
        if name == GROUP and isinstance(data, list):
            for entry in data:
                s, n, c, p = entry[:4]
                if len(entry) > 4:  # the event's positional values (store._encode)
                    p = _whole(run_id, s, n, p, entry)
                # created_at: microseconds (an int), or seconds (a float; an int in schema 3)
                out.append(JournalEntry(run_id, s, n, p, c / 1e6 if type(c) is int and c > _SECONDS else c))
            compacted = True
        else:
            out.append(JournalEntry(run_id, seq, name, data, created_at, key))
            compacted = compacted or name in _COMPACTED
    if compacted:
        out.sort(key=_seq)
        for a, b in itertools.pairwise(out):
            if a.seq == b.seq:
                raise JournalError(f"run {run_id!r}: the journal holds two entries with seq {a.seq} "
                                   f"({a.name}, {b.name}); it was written by two writers at once")
        _restore(out)
    return out


def _whole(run_id: str, seq: int, name: str, values: Any, entry: list[Any]) -> dict[str, Any]:
    try:
        if entry[4] == 1 and type(values) is list and values and values[0] in TAGS:
            return whole(run_id, seq, name, values)
    except (ValueError, TypeError, IndexError):
        pass
    raise JournalError(f"run {run_id!r}: entry {seq} of a {GROUP} row is not one the journal writes "
                       f"(a writer's own entry named {GROUP}?)")


_SECONDS = 10 ** 13  # a time above it is in microseconds (as seconds it would be 300 000 years from now)


def _seq(e: JournalEntry) -> int:
    return e.seq


_COMPACTED = frozenset({ev.STEP_COMPLETE, ev.EXECUTION_COMPLETE})


def _data(e: JournalEntry) -> Any:
    item = e.payload.get("item") if isinstance(e.payload, dict) else None
    return item.get("data") if isinstance(item, dict) else None


def _restore(entries: list[JournalEntry]) -> None:
    steps: list[dict[str, Any]] = []
    for e in entries:
        if e.name == ev.STEP_COMPLETE:
            data = _data(e)
            if isinstance(data, dict):
                if "function" not in data and "action" in data:
                    whole: dict[str, Any] = {}
                    for k, v in data.items():
                        whole[k] = v
                        if k == "action":
                            whole["function"] = copy.deepcopy(v)
                    e.payload["item"]["data"] = data = whole
                steps.append(data)
        elif e.name == ev.EXECUTION_COMPLETE:
            data = _data(e)
            if isinstance(data, dict) and STEPS_FROM_JOURNAL in data:
                n = data.pop(STEPS_FROM_JOURNAL)
                if isinstance(n, int) and n == len(steps):
                    e.payload["item"]["data"] = {"step_history": copy.deepcopy(steps), **data}
                else:  # the journal lost steps it had (cut by hand?): the history is what is left
                    e.payload["item"]["data"] = {"step_history": copy.deepcopy(steps[:n] if isinstance(n, int)
                                                                                else steps), **data}
