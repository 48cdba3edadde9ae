"""``MCPTool``: one tool of an MCP server as a treadle tool (a part of ``treadle.tools.mcp``)."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

import mcp.types as mcp_types

from ..errors import ToolArgumentsError
from ..types import FunctionDefinition
from ._mcp_pause import run_asker
from .function_tool import FunctionTool

__all__ = ["MCPTool"]

logger = logging.getLogger("treadle.mcp")


# ---------------------------------------------------------------------------- the tool

class MCPTool(FunctionTool):
    """One tool of an MCP server, as a treadle tool.

    ``definition.func_parameters`` is the server's own input schema; arguments are validated
    against it with ``jsonschema`` (no pydantic model is derived). ``fn`` is an async
    generator: it yields progress ``ToolCallActivityRunItem``s, then the ``ToolOutput``.
    """

    __module__ = "treadle.tools.mcp"  # where it is imported from

    def __init__(self, server: Any, tool: mcp_types.Tool, *, name: str, require_approval: bool,
                 timeout: float | None) -> None:
        self.server = server
        self.mcp_name = tool.name
        self.input_schema: dict[str, Any] = dict(tool.input_schema or {"type": "object"})
        self.output_schema = tool.output_schema
        self.annotations = tool.annotations
        self._schema_validator = _make_validator(self.input_schema)
        mcp_name = tool.name

        async def call_mcp_tool(_treadle_ctx: Any = None, **arguments: Any) -> AsyncIterator[Any]:
            # a question the server asks during a run's call pauses that run (treadle.tools._mcp_pause)
            asker = run_asker(name, _treadle_ctx, sampling=server.sampling)
            async for item in server._stream_call(mcp_name, arguments, asker):
                yield item

        call_mcp_tool.__name__ = name
        description = tool.description or ""
        # the server bounds the call by `timeout` itself, off the clock while a question waits for its answer
        # (a person may take minutes); the ToolManager's own bound would count that wait
        self.server_timeout = timeout
        super().__init__(call_mcp_tool, name=name, description=description, require_approval=require_approval,
                         timeout=None, definition=FunctionDefinition(
                             func_name=name, func_desc=description, func_parameters=self.input_schema))

    def _build(self, name: str | None, description: str | None) -> None:
        # the schema is the server's: nothing to read from the (generic) function signature
        self.name = name or self.mcp_name
        self.description = (description or "").strip()
        self._params = []
        self._ctx_params = ["_treadle_ctx"]  # the run's context: where the server's questions go
        self._var_keyword = True
        self._positional_only = False
        self.args_model = None  # type: ignore[assignment]
        self.definition = FunctionDefinition(func_name=self.name, func_desc=self.description,
                                             func_parameters=self.input_schema)

    def validate(self, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise ToolArgumentsError(f"{self.name} takes named arguments only (an object matching its schema)")
        if not isinstance(kwargs, dict):
            raise ToolArgumentsError(f"arguments of {self.name} must be an object, got {type(kwargs).__name__}")
        if self._schema_validator is not None:
            problems = []
            for err in sorted(self._schema_validator.iter_errors(kwargs), key=lambda e: list(e.path)):
                loc = ".".join(str(p) for p in err.path) or "(arguments)"
                problems.append(f"{loc}: {err.message}")
            if problems:
                raise ToolArgumentsError(f"invalid arguments for {self.name}: " + "; ".join(problems[:5]))
        return dict(kwargs)

    def __repr__(self) -> str:
        return f"MCPTool(name={self.name!r}, server={self.server.name!r})"


def _make_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for the tool's input schema, or None if the schema itself is broken."""
    import jsonschema  # a dependency of the mcp SDK
    import jsonschema.validators

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        logger.warning("MCP tool input schema is not valid JSON Schema (%s); arguments go unchecked", e.message)
        return None
    return cls(schema)
