"""The seed Agent's built-in LLM fallback tool."""

from __future__ import annotations

from typing import Any

from ..errors import UserError

__all__ = ["LLM_TOOL", "add_llm_fallback"]

LLM_TOOL = "llm_tool"


def add_llm_fallback(agent: Any) -> None:
    """Add ``llm_tool(input_str) -> str``: the agent's own model answers a sub-question
    directly (no tools, no JSON), for queries no other tool covers."""
    if agent._model is None:
        raise UserError("add_llm_as_fallback needs a model: pass model_client=... (or model=...)")
    from ..models.base import ModelRequest
    from ..tools.function_tool import FunctionTool

    async def llm_tool(input_str: str) -> str:
        """Answer a question directly with the language model, when no other tool fits.

        Args:
            input_str: the question or instruction for the model.
        """
        request = ModelRequest(messages=[{"role": "user", "content": input_str}],
                               model_kwargs=dict(agent.model_kwargs))
        response = await agent.model.request(request)
        return response.text or ""

    agent.tool_manager.add(FunctionTool(llm_tool, name=LLM_TOOL))
