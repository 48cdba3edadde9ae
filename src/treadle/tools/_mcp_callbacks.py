"""The requests an MCP server sends its client — elicitation, sampling, roots — answered for
``MCPServer`` (a part of ``treadle.tools.mcp``): by the run whose tool call they came during
(``treadle.tools._mcp_pause``), else by the server's ``elicitation`` handler."""

from __future__ import annotations

import logging
from typing import Any, Callable

import mcp.types as mcp_types

from mcp import ClientSession

from .._approval import NobodyToAsk
from ..errors import RunSuspension
from ._mcp_pause import InFlight, QuestionNotAnswered, current_flight
from ._mcp_requests import ElicitationHandler, MCPElicitation, call_handler, elicit_result
from ._mcp_results import describe_error

__all__ = ["ServerRequests", "negotiate", "root_of"]

logger = logging.getLogger("treadle.mcp")


class ServerRequests:
    """Mixin of ``MCPServer``: the callbacks its ``ClientSession`` gets."""

    name: str
    elicitation: ElicitationHandler | None
    sampling: str
    _in_flight: list[InFlight]
    _roots: list[tuple[str, str | None]]
    _tools_stale: bool

    async def _watch_tools(self, session: ClientSession) -> None:
        """On 2026-07-28 a server announces a changed tool list only to a ``subscriptions/listen`` stream."""
        caps = session.server_capabilities
        if session.discover_result is None or caps is None or caps.tools is None or not caps.tools.list_changed:
            return
        from mcp.client.subscriptions import ToolsListChanged, listen

        try:
            async with listen(session, tools_list_changed=True) as events:
                async for event in events:
                    if isinstance(event, ToolsListChanged):
                        self._tools_stale = True
        except Exception as e:  # a lost stream costs the notifications only
            logger.info("MCP server %s: tools/list_changed subscription ended: %s", self.name, describe_error(e))

    async def _answer_input_required(self, session: ClientSession, name: str, arguments: dict[str, Any],
                                     on_progress: Callable[..., Any] | None, first: Any) -> Any:
        """The 2026-07-28 multi round-trip: the server's input requests (elicitation, sampling, roots) go
        to the same callbacks as the 2025 server-to-client requests, then the call is sent again with
        the answers and the server's opaque state (the SDK's driver)."""
        from mcp.client._input_required import run_input_required_driver
        from mcp.client.session import ClientRequestContext

        async def dispatch(key: str, request: Any) -> Any:
            meta = request.params.meta if request.params else None
            return await session.dispatch_input_request(
                ClientRequestContext(session=session, request_id=key, meta=meta), request)

        async def retry(responses: Any, state: str | None) -> Any:
            return await session.call_tool(name, arguments, progress_callback=on_progress, input_responses=responses,
                                           request_state=state, allow_input_required=True)

        return await run_input_required_driver(first, dispatch=dispatch, retry=retry)

    async def _on_elicit(self, context: Any, params: Any) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        """The server asks a question: the run whose call it came during pauses for it, else the handler answers.

        A 2026-07-28 question (``input_required``) belongs to the call it answers. A 2025 one names no call,
        but over streamable HTTP it comes on its call's own response stream, and the SDK answers it in that
        call's context: ``current_flight`` is that call (tests/mcp/test_mcp_parallel_questions.py, two calls
        at once). Over stdio (one stream) it goes to the oldest call in flight made by a run (exact with one
        call at a time per server)."""
        call = current_flight.get() or next((c for c in self._in_flight if c.ask is not None), None)
        if call is None and self._in_flight:
            call = self._in_flight[0]
        question = MCPElicitation.from_params(self.name, params, tool=call.tool if call else None)
        try:
            if call is not None and call.ask is not None:
                answer = await call.asking(call.ask.elicit(question))
            elif self.elicitation is not None:
                answer = await call_handler(self.elicitation, question)
            else:
                why = (f"treadle could not ask anyone: the question came outside a run and MCP server {self.name} "
                       "has no elicitation handler (MCPServer(..., elicitation=handler))")
                if call is not None:
                    call.unanswered = why
                return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=why)
        except RunSuspension as e:  # the run waits for the answer: this call ends, the resume makes it again
            assert call is not None
            call.suspended = e
            return mcp_types.ElicitResult(action="cancel")
        except Exception as e:
            if not isinstance(e, (QuestionNotAnswered, NobodyToAsk)):
                logger.exception("MCP server %s: answering the question %r failed", self.name, question.message)
            if call is not None:
                call.unanswered = str(e)
            return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=f"the client could not answer: {e}")
        return elicit_result(question, answer)

    async def _on_sampling(self, context: Any, params: Any) -> Any:
        """The server asks for a model reply: the model of the run whose call it came during answers."""
        call = current_flight.get() or next((c for c in self._in_flight if c.ask is not None), None)
        if self.sampling == "deny" or call is None or call.ask is None:
            why = (f"MCP server {self.name} does not allow sampling (sampling='deny')" if self.sampling == "deny" else
                   "treadle answers sampling requests with a run's model: this one came outside a run's tool call")
            return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=why)
        try:
            return await call.asking(call.ask.sample(self.name, params))
        except RunSuspension as e:
            call.suspended = e
            return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message="the run paused for an approval")
        except Exception as e:
            if not isinstance(e, NobodyToAsk):
                logger.exception("MCP server %s: the sampling request failed", self.name)
            call.unanswered = f"the model request failed: {e}"
            return mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=f"the client's model failed: {e}")

    async def _on_list_roots(self, context: Any) -> Any:
        roots = [mcp_types.Root.model_validate({"uri": uri, "name": name}) for uri, name in self._roots]
        return mcp_types.ListRootsResult(roots=roots)


async def negotiate(session: ClientSession, protocol: str) -> None:
    """The protocol era: ``"auto"``, the SDK's connect policy (probe ``server/discover`` for 2026-07-28,
    else the ``initialize`` handshake), or ``"legacy"`` (the handshake only)."""
    if protocol == "legacy":
        await session.initialize()
        return
    try:
        from mcp.client._probe import negotiate_auto
    except ImportError:  # pragma: no cover - an SDK without the 2026 revision
        await session.initialize()
        return
    await negotiate_auto(session)


def root_of(path: str) -> tuple[str, str | None]:
    """A root's ``file://`` URI and name, from a path (made absolute) or a URI."""
    if path.startswith("file://"):
        return path, None
    from pathlib import Path

    p = Path(path).expanduser().resolve()
    return p.as_uri(), p.name or None
