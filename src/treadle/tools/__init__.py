"""Tools: FunctionTool (a callable with a JSON schema) and the ToolManager that runs them."""

from ._threads import set_tool_threads
from .function_tool import FunctionTool, FunctionType, ToolKind, tool
from .manager import ToolManager, ToolResult

__all__ = ["FunctionTool", "FunctionType", "ToolKind", "ToolManager", "ToolResult", "set_tool_threads", "tool"]
