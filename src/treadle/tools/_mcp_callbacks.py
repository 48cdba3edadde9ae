"""The requests an MCP server sends its client — elicitation, sampling, roots — answered for
``MCPServer`` (a part of ``treadle.tools.mcp``): by the run whose tool call they came during
(``treadle.tools._mcp_pause``), else by the server's ``elicitation`` handler."""

from __future__ import annotations

import logging
from typing import Any

import mcp.types as mcp_types

from .._approval import NobodyToAsk
from ..errors import RunSuspension
from ._mcp_pause import InFlight, QuestionNotAnswered
from ._mcp_requests import ElicitationHandler, MCPElicitation, call_handler, elicit_result

__all__ = ["ServerRequests", "root_of"]

logger = logging.getLogger("treadle.mcp")


class ServerRequests:
    """Mixin of ``MCPServer``: the callbacks its ``ClientSession`` gets."""

    name: str
    elicitation: ElicitationHandler | None
    sampling: str
    _in_flight: list[InFlight]
    _roots: list[tuple[str, str | None]]

    async def _on_elicit(self, context: Any, params: Any) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        """The server asks a question: the run whose call it came during pauses for it, else the handler answers.

        The protocol does not say which call a question belongs to: it goes to the oldest call in
        flight made by a run (one call at a time per server is exact)."""
        call = next((c for c in self._in_flight if c.ask is not None), None)
        if call is None and self._in_flight:
            call = self._in_flight[0]
        question = MCPElicitation.from_params(self.name, params, tool=call.tool if call else None)
        try:
            if call is not None and call.ask is not None:
                answer = await call.ask.elicit(question)
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
        call = next((c for c in self._in_flight if c.ask is not None), None)
        if self.sampling == "deny" or call is None or call.ask is None:
            why = (f"MCP server {self.name} does not allow sampling (sampling='deny')" if self.sampling == "deny" else
                   "treadle answers sampling requests with a run's model: this one came outside a run's tool call")
            return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=why)
        try:
            return await call.ask.sample(self.name, params)
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


def root_of(path: str) -> tuple[str, str | None]:
    """A root's ``file://`` URI and name, from a path (made absolute) or a URI."""
    if path.startswith("file://"):
        return path, None
    from pathlib import Path

    p = Path(path).expanduser().resolve()
    return p.as_uri(), p.name or None
