"""A remote A2A agent as a tool of a treadle agent (``pip install 'treadle[server]'`` for a2a-sdk).

    support = A2AAgent("http://127.0.0.1:8000/a2a/support", token=os.environ["TOKEN"])
    agent = Agent("desk", tools=[support.as_tool()], model=...)

The tool sends the model's message to the remote agent (a new task), follows the task's
stream, and returns the answer (its artifacts' text). A remote task that fails or is
cancelled is the tool's error. A remote task that stops ``input-required`` (the remote
agent asks a question, or waits for an approval of one of its tools) is returned to the
model as an error observation naming the task and the question: the calling model does not
answer a remote approval — unless ``replies=True``, which adds a ``task_id`` argument so the
model can continue that task with its reply. Cancelling the calling run cancels the remote
task (``tasks/cancel``). See docs/a2a.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

from ..errors import TreadleError, UserError
from .function_tool import FunctionTool

if TYPE_CHECKING:  # a2a-sdk and httpx are imported on first use
    import httpx
    from a2a.types import AgentCard, Message, Part, Task

__all__ = ["A2AAgent", "A2AError", "a2a_tool"]


class A2AError(TreadleError):
    """The remote agent's task failed, was cancelled, or waits for input."""


class A2AAgent:
    """A client of one remote A2A agent (its base URL: the card is at
    ``{url}/.well-known/agent-card.json``)."""

    def __init__(self, url: str, *, token: str | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._card: AgentCard | None = None  # fetched once

    def _http(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(headers=self.headers, timeout=self.timeout)

    async def card(self) -> AgentCard:
        """The remote agent's card (an ``a2a.types.AgentCard``)."""
        from a2a.client import A2ACardResolver

        card = self._card
        if card is None:
            async with self._http() as http:
                card = self._card = await A2ACardResolver(http, self.url).get_agent_card()
        return card

    async def ask(self, text: str, *, task_id: str | None = None, context_id: str | None = None
                  ) -> Union[Task, Message]:
        """Send ``text`` (a new task, or a reply on ``task_id``) and follow the task to its end or
        to ``input-required``; returns the last ``a2a.types.Task``. Cancelled meanwhile, it
        cancels the remote task."""
        from a2a.client import ClientConfig, create_client
        from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Part, Role, SendMessageRequest

        message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)])
        if task_id:
            message.task_id = task_id
        if context_id:
            message.context_id = context_id
        card = await self.card()
        async with self._http() as http:
            client = await create_client(card, ClientConfig(streaming=True, httpx_client=http))
            seen: str | None = None
            try:
                async for response in client.send_message(SendMessageRequest(message=message)):
                    if response.HasField("task"):
                        seen = response.task.id
                    elif response.HasField("status_update"):
                        seen = response.status_update.task_id or seen
                    elif response.HasField("message"):  # an agent answering with a message, no task
                        return response.message
                if seen is None:
                    raise A2AError(f"{self.url} answered without a task")
                return await client.get_task(GetTaskRequest(id=seen))
            except asyncio.CancelledError:
                if seen is not None:
                    try:  # the calling run was cancelled: so is the remote task
                        await asyncio.shield(asyncio.wait_for(client.cancel_task(CancelTaskRequest(id=seen)), 10))
                    except Exception:
                        pass
                raise

    async def cancel(self, task_id: str) -> Task:
        from a2a.client import ClientConfig, create_client
        from a2a.types import CancelTaskRequest

        card = await self.card()
        async with self._http() as http:
            client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
            return await client.cancel_task(CancelTaskRequest(id=task_id))

    def as_tool(self, name: str | None = None, description: str | None = None, *, replies: bool = False,
                require_approval: bool = False, timeout: float | None = None) -> FunctionTool:
        """This remote agent as a tool (``message`` -> its answer); ``replies=True`` adds
        ``task_id`` so the model can answer a remote task's question."""
        name = name or _tool_name(self.url)
        remote = self

        async def ask_remote(message: str) -> str:
            return answer_of(await remote.ask(message), remote.url)

        async def ask_remote_or_reply(message: str, task_id: str | None = None) -> str:
            return answer_of(await remote.ask(message, task_id=task_id), remote.url, replies=True)

        doc = description or f"Ask the remote agent at {self.url} (A2A); returns its answer."
        args = "\n\nArgs:\n    message: what to ask the remote agent"
        if replies:
            args += "\n    task_id: reply on this task of the remote agent (one that asked for input)"
        fn = ask_remote_or_reply if replies else ask_remote
        fn.__doc__ = doc + args
        return FunctionTool(fn, name=name, description=doc, require_approval=require_approval, timeout=timeout)


def a2a_tool(url: str, *, token: str | None = None, name: str | None = None, description: str | None = None,
             replies: bool = False, require_approval: bool = False) -> FunctionTool:
    """``A2AAgent(url, token=token).as_tool(...)``."""
    return A2AAgent(url, token=token).as_tool(name, description, replies=replies, require_approval=require_approval)


def _tool_name(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9_]", "_", tail).strip("_") or "remote_agent"
    return name if not name[0].isdigit() else f"agent_{name}"


def answer_of(result: Union[Task, Message], url: str, *, replies: bool = False) -> str:
    """The text of a remote task's answer (or message); A2AError when it has none to give."""
    from a2a.helpers.proto_helpers import get_data_parts, get_text_parts
    from a2a.types import Message, TaskState

    def text(parts: Sequence[Part]) -> str:
        return "\n".join([*get_text_parts(parts), *(json.dumps(d) for d in get_data_parts(parts))])

    if isinstance(result, Message):
        return text(result.parts)
    state = result.status.state
    said = text(result.status.message.parts) if result.status.HasField("message") else ""
    if state == TaskState.TASK_STATE_COMPLETED:
        return "\n".join(text(a.parts) for a in result.artifacts) or said
    if state == TaskState.TASK_STATE_INPUT_REQUIRED:
        how = (f"reply with task_id={result.id!r}" if replies else
               "a person answers it on that task (A2A message/send with its task id)")
        raise A2AError(f"the remote agent at {url} waits for input on task {result.id}: {said} — {how}")
    if state in (TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED):
        raise A2AError(f"the remote task {result.id} ended {TaskState.Name(state)}: {said}")
    raise UserError(f"the remote task {result.id} is {TaskState.Name(state)}: {said}")
