"""Conversation memory: the plug point and a simple in-process implementation.

The runner, at the start of a run, calls ``reset_pending_query()``, renders ``memory()``
into ``chat_history_str`` and calls ``add_user_query``; at the end it calls
``add_assistant_response`` in every ending (a failed or cancelled run is recorded as
such, so the user's turn never vanishes). Methods may be sync or async.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .types import AssistantResponse, UserQuery

__all__ = ["ConversationMemory", "DialogTurn", "MemoryProtocol"]


@runtime_checkable
class MemoryProtocol(Protocol):
    def reset_pending_query(self) -> Any: ...

    def __call__(self) -> Any: ...

    def add_user_query(self, query: UserQuery | str) -> Any: ...

    def add_assistant_response(self, response: AssistantResponse | str) -> Any: ...


@dataclass(slots=True)
class DialogTurn:
    user_query: UserQuery
    assistant_response: AssistantResponse
    order: int
    created_at: float = field(default_factory=time.time)


class ConversationMemory:
    """In-process memory of (user, assistant) turns, rendered as ``chat_history_str``.

    ``max_turns`` bounds how many of the latest turns go into the prompt.
    """

    def __init__(self, max_turns: int | None = 20, session_id: str | None = None) -> None:
        self.max_turns = max_turns
        self.session_id = session_id
        self.turns: list[DialogTurn] = []
        self._pending: UserQuery | None = None

    def reset_pending_query(self) -> None:
        self._pending = None

    def add_user_query(self, query: UserQuery | str) -> int:
        if self._pending is not None:
            raise ValueError("There's already a pending user query; add the assistant response first")
        self._pending = query if isinstance(query, UserQuery) else UserQuery(query_str=query)
        return len(self.turns)

    def add_assistant_response(self, response: AssistantResponse | str) -> int:
        if self._pending is None:
            raise ValueError("No pending user query found; add the user query first")
        resp = response if isinstance(response, AssistantResponse) else AssistantResponse(response_str=response)
        self.turns.append(DialogTurn(self._pending, resp, order=len(self.turns)))
        self._pending = None
        return len(self.turns) - 1

    def add_dialog_turn(self, user_query: UserQuery | str, assistant_response: AssistantResponse | str) -> int:
        self.add_user_query(user_query)
        return self.add_assistant_response(assistant_response)

    def clear_conversation_turns(self) -> None:
        self.turns.clear()
        self._pending = None

    def call(self) -> str:
        turns = self.turns if self.max_turns is None else self.turns[-self.max_turns:]
        lines: list[str] = []
        for t in turns:
            lines.append(f"User: {t.user_query.query_str}")
            lines.append(f"Assistant: {t.assistant_response.response_str}")
        return "\n".join(lines)

    __call__ = call
