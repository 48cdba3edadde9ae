"""ConversationMemory, the store protocol and the in-process store."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union, cast, runtime_checkable

from .._plugs import check_plug, fits
from ..types import AssistantResponse, UserQuery, new_id, to_jsonable
from ._summary import SessionSummary, SummaryStore, after, render_summary

__all__ = [
    "Conversation", "ConversationMemory", "DialogTurn", "InMemoryStore", "MemoryProtocol", "MemoryStore", "SessionInfo",
    "TurnDB", "approx_tokens",
]


@runtime_checkable
class MemoryProtocol(Protocol):
    """What the Runner needs from a memory (each method may return an awaitable)."""

    def reset_pending_query(self) -> Any: ...

    def __call__(self) -> Any: ...

    def add_user_query(self, query: UserQuery | str) -> Any: ...

    def add_assistant_response(self, response: AssistantResponse | str) -> Any: ...


@dataclass(slots=True)
class DialogTurn:
    """One whole turn: the user's query and the assistant's response.

    ``order`` is the turn's position in its session (0, 1, 2, ...), given by the store. ``id``
    is the turn id ``add_user_query`` returned (the SQL stores do not keep it: a turn loaded
    from them gets a fresh one).
    """

    user_query: UserQuery
    assistant_response: AssistantResponse
    order: int = -1
    created_at: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)


@dataclass
class Conversation:
    """The seed's view of a session: its turns by order (``ConversationMemory.current_conversation``)."""

    id: str
    user_id: str | None = None
    dialog_turns: OrderedDict[int, DialogTurn] = field(default_factory=OrderedDict[int, DialogTurn])
    name: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)

    def get_chat_history_str(self) -> str:
        return render_turns(self.dialog_turns.values(), _ALL)


class TurnDB:
    """The seed's ``turn_db``: every turn added, as ``{"id", "user_query", "assistant_response"}``
    dicts, kept in ``items`` (never cleared by ``clear_conversation_turns``)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        self.items.append(item)


@dataclass(slots=True)
class SessionInfo:
    """A session as listed by a store: its id, how many turns it holds, and when it was used."""

    session_id: str
    turns: int
    created_at: float
    updated_at: float


@runtime_checkable
class MemoryStore(Protocol):
    """Where the turns live. Implementations must be safe to call from several threads at once.

    The stores shipped with treadle are synchronous. A store whose methods return awaitables
    works too: ``ConversationMemory`` then returns those awaitables, and the Runner awaits them.
    """

    def append_turn(self, session_id: str, turn: DialogTurn) -> int:
        """Add ``turn`` at the end of the session (created when new); return its order."""
        ...

    def load_turns(self, session_id: str, last: int | None = None) -> list[DialogTurn]:
        """The session's ``last`` newest turns (all when None), oldest first; [] for an unknown session."""
        ...

    def list_sessions(self) -> list[SessionInfo]:
        """Every session, the most recently updated first."""
        ...

    def delete_session(self, session_id: str) -> bool:
        """Forget the session and its turns; False when there was no such session."""
        ...


def approx_tokens(text: str) -> int:
    """A rough token count: about four characters per token."""
    return (len(text) + 3) // 4


_ALL: Literal["all"] = "all"
Keys = Union[Collection[str], Literal["all"], None]  # the metadata keys rendered: some, every one, none


def _meta_lines(metadata: object, keys: Keys) -> list[str]:
    if not keys or not isinstance(metadata, dict):
        return []
    items: dict[Any, Any] = cast("dict[Any, Any]", metadata)
    return [f"{k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}"
            for k, v in items.items() if keys == _ALL or k in keys]


def render_turn(turn: DialogTurn, metadata_keys: Keys = None) -> str:
    """The prompt lines of one turn, in the seed's format ("User:\nquery: …\nAssistant: …").

    Metadata is rendered only for ``metadata_keys`` (a collection of keys, or "all")."""
    q = turn.user_query.query_str
    lines = ["User:", f"query: {'' if q is None else q}"]
    lines += _meta_lines(turn.user_query.metadata, metadata_keys)
    lines.append(f"Assistant: {turn.assistant_response.response_str}")
    lines += _meta_lines(turn.assistant_response.metadata, metadata_keys)
    return "\n".join(lines)


def render_turns(turns: Iterable[DialogTurn], metadata_keys: Keys = None) -> str:
    return "\n".join(render_turn(t, metadata_keys) for t in turns).strip()


def render_history(summary: SessionSummary | None, turns: list[DialogTurn], metadata_keys: Keys = None) -> str:
    """``chat_history_str``: the session's summary, then the turns after it."""
    return render_summary(summary, render_turns(turns[after(summary, (t.order for t in turns)):], metadata_keys))


def _jsonable_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    value = to_jsonable(metadata)
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {"value": value}


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(to_jsonable(value), ensure_ascii=False)


def normalize_query(query: UserQuery | str | None) -> UserQuery:
    """A UserQuery whose text is a str (or None) and whose metadata is plain JSON, as every store keeps it."""
    if not isinstance(query, UserQuery):
        return UserQuery(query_str=None if query is None else _as_text(query))
    text = query.query_str
    return UserQuery(query_str=None if text is None else _as_text(text), metadata=_jsonable_metadata(query.metadata))


def normalize_response(response: AssistantResponse | str | None) -> AssistantResponse:
    if not isinstance(response, AssistantResponse):
        return AssistantResponse(response_str=_as_text(response))
    return AssistantResponse(response_str=_as_text(response.response_str),
                             metadata=_jsonable_metadata(response.metadata))


class InMemoryStore:
    """Turns kept in this process only (lost when it exits). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, list[DialogTurn]] = {}
        self._info: dict[str, SessionInfo] = {}
        self._summaries: dict[str, SessionSummary] = {}

    def append_turn(self, session_id: str, turn: DialogTurn) -> int:
        with self._lock:
            turns = self._sessions.setdefault(session_id, [])
            now = time.time()
            info = self._info.get(session_id)
            if info is None:
                info = self._info[session_id] = SessionInfo(session_id, 0, now, now)
            turn.order = info.turns
            turns.append(turn)
            info.turns += 1
            info.updated_at = now
            return turn.order

    def load_turns(self, session_id: str, last: int | None = None) -> list[DialogTurn]:
        with self._lock:
            turns = self._sessions.get(session_id, [])
            if last is None:
                return list(turns)
            return turns[-last:] if last > 0 else []

    def list_sessions(self) -> list[SessionInfo]:
        with self._lock:
            infos = [SessionInfo(i.session_id, i.turns, i.created_at, i.updated_at) for i in self._info.values()]
        return sorted(infos, key=lambda i: (-i.updated_at, i.session_id))

    def delete_session(self, session_id: str) -> bool:
        with self._lock:
            self._info.pop(session_id, None)
            self._summaries.pop(session_id, None)
            return self._sessions.pop(session_id, None) is not None

    def save_summary(self, session_id: str, summary: SessionSummary) -> bool:
        with self._lock:
            old = self._summaries.get(session_id)
            if old is not None and old.upto >= summary.upto:
                return False
            self._summaries[session_id] = summary
            return True

    def load_summary(self, session_id: str) -> SessionSummary | None:
        with self._lock:
            return self._summaries.get(session_id)

    def close(self) -> None:
        pass

    def __enter__(self) -> InMemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InMemoryStore({len(self._sessions)} sessions)"


# Loading with a token budget and no turn limit: read the newest turns in growing windows
# until the budget is spent or the session's start is reached.
_FIRST_WINDOW = 16
_WINDOW_GROWTH = 4


class ConversationMemory:
    """The conversation of one session, rendered into the prompt as ``chat_history_str``.

    Args:
        store: where turns are kept (default: a new ``InMemoryStore``); share one store between
            memories, processes or machines (``SQLiteMemoryStore``, ``PostgresMemoryStore``) to
            keep and resume sessions.
        session_id: the session to write to and read from (default: a new random id). Giving the
            id of an existing session resumes it.
        max_turns: at most this many of the newest turns go into the prompt (None: no limit).
        max_tokens: and at most about this many tokens of them (None: no limit); the newest
            whole turns that fit are kept.
        count_tokens: how to count tokens for ``max_tokens`` (default ``approx_tokens``, ~4 chars/token).
        turn_db: the seed's turn log (anything with ``add(dict)`` or an ``items`` list; default a
            ``TurnDB``); passing it as the first argument works too.
        user_id: the seed's user id, shown on ``current_conversation``.

    The Runner calls ``memory()`` at the start of a run for the history, and at the end
    ``reset_pending_query()``, ``add_user_query()`` and ``add_assistant_response()`` back to back,
    so a turn is written whole: concurrent runs sharing one memory each add their own turn.
    Metadata (status, run id, ...) is stored with each turn but never rendered into the prompt.
    """

    def __init__(self, store: MemoryStore | None = None, session_id: str | None = None, max_turns: int | None = 20,
                 max_tokens: int | None = None, *, count_tokens: Callable[[str], int] | None = None,
                 turn_db: Any = None, user_id: str | None = None) -> None:
        given = cast(object, store)  # untyped callers: checked at run time
        if given is not None and not isinstance(given, MemoryStore) and turn_db is None and (
                hasattr(given, "items") or callable(getattr(given, "add", None))):
            store, turn_db = None, store  # the seed's ConversationMemory(turn_db)
        if store is None:
            store = InMemoryStore()
        else:  # a PlugError (a TypeError too) naming what the store lacks
            check_plug(store, MemoryStore, "memory store", hint=" (the first argument is the store: pass max_turns "
                                                                 "by name)" if isinstance(store, int) else "")
        for name, value in (("max_turns", cast(object, max_turns)), ("max_tokens", cast(object, max_tokens))):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")
        if session_id is not None and (not isinstance(cast(object, session_id), str) or not session_id):
            raise ValueError("session_id must be a non-empty str")
        self.store: MemoryStore = store
        self.session_id: str = session_id or new_id()
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens or approx_tokens
        self.turn_db: Any = turn_db if turn_db is not None else TurnDB()
        self.user_id = user_id
        self.conver_db: list[str] = []  # ids of the sessions new_conversation() left behind
        self._pending_user_query: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the seed's contract
    def reset_pending_query(self) -> None:
        with self._lock:
            self._pending_user_query = None

    def add_user_query(self, query: UserQuery | str) -> str:
        """Hold the user's query until its response arrives (nothing is stored before that);
        returns the turn id."""
        q = normalize_query(query)
        with self._lock:
            if self._pending_user_query is not None:
                raise ValueError("There's already a pending user query; add the assistant response first")
            self._pending_user_query = {"id": new_id(), "user_query": q}
            return self._pending_user_query["id"]

    def add_assistant_response(self, response: AssistantResponse | str) -> Any:
        """Store the pending query and this response as one turn; returns the turn id
        (an awaitable of it with an async store)."""
        r = normalize_response(response)
        with self._lock:
            pending = self._pending_user_query
            if pending is None:
                raise ValueError("No pending user query found; add the user query first")
            turn = DialogTurn(pending["user_query"], r, id=pending["id"])
            self._pending_user_query = None
        return self._append(turn)

    def add_dialog_turn(self, user_query: UserQuery | str, assistant_response: AssistantResponse | str) -> Any:
        """Store a whole turn at once (independent of any pending query); returns its turn id."""
        return self._append(DialogTurn(normalize_query(user_query), normalize_response(assistant_response)))

    def _append(self, turn: DialogTurn) -> Any:
        item = {"id": turn.id, "user_query": turn.user_query, "assistant_response": turn.assistant_response}
        add = getattr(self.turn_db, "add", None)
        if callable(add):
            add(item)
        elif isinstance(getattr(self.turn_db, "items", None), list):
            self.turn_db.items.append(item)
        stored = self.store.append_turn(self.session_id, turn)
        if inspect.isawaitable(stored):
            return _then(stored, turn.id)
        return turn.id

    @property
    def current_conversation(self) -> Any:
        """The session as the seed's ``Conversation`` (``dialog_turns``: order -> DialogTurn;
        an awaitable of it with an async store)."""
        turns = self.store.load_turns(self.session_id)
        if inspect.isawaitable(turns):
            return self._conversation_async(turns)
        return self._conversation(turns)

    def _conversation(self, turns: list[DialogTurn]) -> Conversation:
        return Conversation(id=self.session_id, user_id=self.user_id,
                            dialog_turns=OrderedDict((t.order, t) for t in turns))

    async def _conversation_async(self, turns: Awaitable[list[DialogTurn]]) -> Conversation:
        return self._conversation(await turns)

    def new_conversation(self) -> None:
        """Start a new session (the old one stays in the store; its id goes to ``conver_db``)."""
        self.reset_pending_query()
        self.conver_db.append(self.session_id)
        self.session_id = new_id()

    def clear_conversation_turns(self) -> Any:
        """Forget this session's turns (in the store too)."""
        self.reset_pending_query()
        return self.store.delete_session(self.session_id)

    @property
    def turns(self) -> Any:
        """Every turn of the session, oldest first (not bounded; an awaitable with an async store)."""
        return self.store.load_turns(self.session_id)

    # ------------------------------------------------------------------ the prompt
    def history_turns(self) -> Any:
        """The turns that go into the prompt: the newest ones within ``max_turns`` and ``max_tokens``."""
        plan = self._plan()
        try:
            last = next(plan)
            while True:
                loaded = self.store.load_turns(self.session_id, last)
                if inspect.isawaitable(loaded):
                    return self._drive_async(plan, loaded)
                last = plan.send(loaded)
        except StopIteration as stop:
            return stop.value

    def call(self, metadata_filter: Iterable[str] | None = None) -> Any:
        """``chat_history_str``: the bounded history in the seed's format ("User:\\nquery: …\\n
        Assistant: …" per turn), "" when empty. Metadata is rendered only for the keys in
        ``metadata_filter`` (every key with the seed-compatibility switch on and no filter)."""
        keys: Keys = set(metadata_filter) if metadata_filter is not None else None
        if keys is None:
            from ..compat import seed_compat

            keys = _ALL if seed_compat() else None
        summary = self.summary()
        turns = self.history_turns()
        if inspect.isawaitable(turns) or inspect.isawaitable(summary):
            return self._render_async(summary, turns, keys)
        return render_history(summary, turns, keys)

    __call__ = call
    memory = call

    def _plan(self) -> Generator[int | None, list[DialogTurn], list[DialogTurn]]:
        """Which windows to load (yielded) and which loaded turns to keep (returned)."""
        if self.max_turns == 0 or self.max_tokens == 0:
            return []
        if self.max_tokens is None:
            return (yield self.max_turns)
        window = self.max_turns if self.max_turns is not None else _FIRST_WINDOW
        while True:
            turns = yield window
            kept = self._fit(turns)
            if self.max_turns is not None or len(kept) < len(turns) or len(turns) < window:
                return kept
            window *= _WINDOW_GROWTH

    def _fit(self, turns: list[DialogTurn]) -> list[DialogTurn]:
        assert self.max_tokens is not None
        budget = self.max_tokens
        start = len(turns)
        for turn in reversed(turns):
            budget -= self.count_tokens(render_turn(turn))
            if budget < 0:
                break
            start -= 1
        return turns[start:]

    async def _drive_async(self, plan: Generator[int | None, list[DialogTurn], list[DialogTurn]],
                           loaded: Awaitable[list[DialogTurn]]) -> list[DialogTurn]:
        try:
            while True:
                last = plan.send(await loaded if inspect.isawaitable(loaded) else loaded)
                loaded = self.store.load_turns(self.session_id, last)  # type: ignore[assignment]
        except StopIteration as stop:
            return stop.value

    async def _render_async(self, summary: SessionSummary | Awaitable[SessionSummary | None] | None,
                            turns: list[DialogTurn] | Awaitable[list[DialogTurn]], keys: Keys = None) -> str:
        s = await summary if inspect.isawaitable(summary) else summary
        return render_history(s, await turns if inspect.isawaitable(turns) else turns, keys)

    def summary(self) -> SessionSummary | Awaitable[SessionSummary | None] | None:
        """The session's summary of its older turns (None: none yet, or a store that keeps none)."""
        store = self.store
        return store.load_summary(self.session_id) if fits(store, SummaryStore) else None

    def __repr__(self) -> str:
        return (f"ConversationMemory(store={self.store!r}, session_id={self.session_id!r}, "
                f"max_turns={self.max_turns}, max_tokens={self.max_tokens})")


async def _then(stored: Awaitable[Any], value: Any) -> Any:
    await stored
    return value


# ---------------------------------------------------------------------- shared by the SQL stores
def turn_from_row(order: int, created_at: float, query_str: str | None, query_meta: Any, response_str: str,
                  response_meta: Any) -> DialogTurn:
    """A DialogTurn from a row; metadata given as JSON text or as already-decoded values."""
    if isinstance(query_meta, str):
        query_meta = json.loads(query_meta)
    if isinstance(response_meta, str):
        response_meta = json.loads(response_meta)
    return DialogTurn(UserQuery(query_str=query_str, metadata=query_meta),
                      AssistantResponse(response_str=response_str, metadata=response_meta),
                      order=int(order), created_at=float(created_at))


def check_table_prefix(prefix: str) -> str:
    """Table names are built from the prefix: allow only a plain SQL identifier."""
    if not (isinstance(cast(object, prefix), str) and prefix[:1].isalpha() and len(prefix) <= 40
            and all(c.isascii() and (c.isalnum() or c == "_") for c in prefix)):
        raise ValueError(f"table prefix must be a plain identifier (letters, digits, _), got {prefix!r}")
    return prefix
