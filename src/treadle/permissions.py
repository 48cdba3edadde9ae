"""Human approval of tool calls: the PermissionManager plug point.

The runner asks ``is_approval_required(name)`` for each call (and always treats a tool
built with ``require_approval=True`` as requiring it), emits
``agent.tool_permission_request`` with ``create_permission_event(function)``, then waits
on ``await check_permission(function)`` for ``(allowed, function_to_run[, data])``.
A denied call becomes a ``ToolOutput`` with status ``cancelled`` that the model sees.
Nothing requiring approval runs without a decision: with no manager, or a manager
without a way to decide, the call is denied.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Protocol, Union, runtime_checkable

from .events import FunctionRequest, ToolCallPermissionRequest
from .types import Function, ToolOutput

__all__ = [
    "ApprovalOutcome",
    "ApprovalResponse",
    "PermissionManager",
    "PermissionManagerProtocol",
]


class ApprovalOutcome(str, enum.Enum):
    PROCEED_ONCE = "proceed_once"
    PROCEED_ALWAYS = "proceed_always"
    CANCEL = "cancel"


@dataclass(slots=True)
class ApprovalResponse:
    """A decision; ``function`` (optional) replaces the call's arguments (an edit)."""

    outcome: ApprovalOutcome
    response_data: Any = None
    function: Function | None = None
    reason: str | None = None


Decision = Union[ApprovalOutcome, ApprovalResponse, bool]
ApprovalCallback = Callable[[FunctionRequest], Union[Decision, Awaitable[Decision]]]


@runtime_checkable
class PermissionManagerProtocol(Protocol):
    def register_tool(self, name: str, require_approval: bool = True) -> None: ...

    def is_approval_required(self, name: str) -> bool: ...

    def create_permission_event(self, function: Function) -> ToolCallPermissionRequest | ToolOutput: ...

    async def check_permission(self, function: Function) -> tuple[Any, ...]: ...


class PermissionManager:
    """Gates tools through an approval callback (sync or async).

    ``approval_mode``: ``"default"`` asks for registered tools, ``"auto_approve"`` and
    ``"yolo"`` allow everything except blocked tools. Blocked tools are always denied.
    Without a callback, calls that need approval are denied.
    """

    def __init__(self, approval_callback: ApprovalCallback | None = None,
                 approval_mode: Literal["default", "auto_approve", "yolo"] = "default") -> None:
        self.approval_callback = approval_callback
        self.approval_mode = approval_mode
        self.tool_require_approval: dict[str, bool] = {}
        self.always_allowed_tools: set[str] = set()
        self.blocked_tools: set[str] = set()
        self.pending_approvals: dict[str, FunctionRequest] = {}

    def set_tool_manager(self, tool_manager: Any) -> None:
        for t in getattr(tool_manager, "tools", ()):
            if getattr(t, "require_approval", False):
                self.register_tool(t.name, True)

    def register_tool(self, name: str, require_approval: bool = True) -> None:
        self.tool_require_approval[name] = require_approval

    def is_approval_required(self, name: str) -> bool:
        if name in self.blocked_tools:
            return True
        if self.approval_mode in ("yolo", "auto_approve"):
            return False
        if name in self.always_allowed_tools:
            return False
        return self.tool_require_approval.get(name, False)

    def create_permission_event(self, function: Function) -> ToolCallPermissionRequest | ToolOutput:
        request = FunctionRequest(id=function.id or "", tool_name=function.name, tool=function)
        return ToolCallPermissionRequest(id=request.id, data=request)

    async def check_permission(self, function: Function) -> tuple[bool, Function | None, Any]:
        name = function.name
        if name in self.blocked_tools:
            return False, None, f"tool {name} is blocked"
        if not self.is_approval_required(name):
            return True, function, None
        if self.approval_callback is None:
            return False, None, "no approver is configured"
        request = FunctionRequest(id=function.id or "", tool_name=name, tool=function)
        self.pending_approvals[request.id] = request
        try:
            decision = self.approval_callback(request)
            if inspect.isawaitable(decision):
                decision = await decision
        except Exception as e:
            return False, None, f"approval failed: {e}"
        finally:
            self.pending_approvals.pop(request.id, None)
        return self._apply(function, decision)

    def _apply(self, function: Function, decision: Decision) -> tuple[bool, Function | None, Any]:
        if isinstance(decision, bool):
            return (True, function, None) if decision else (False, None, None)
        if isinstance(decision, ApprovalOutcome):
            decision = ApprovalResponse(decision)
        if not isinstance(decision, ApprovalResponse):
            return False, None, f"invalid decision {decision!r}"
        if decision.outcome == ApprovalOutcome.CANCEL:
            return False, None, decision.reason or decision.response_data
        if decision.outcome == ApprovalOutcome.PROCEED_ALWAYS:
            self.always_allowed_tools.add(function.name)
        return True, decision.function or function, decision.response_data
