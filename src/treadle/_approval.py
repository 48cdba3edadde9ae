"""The approval step of one tool call: ask the permission manager (or apply a decision
recorded while the run was suspended), validate edited arguments, or deny."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from . import events as ev
from ._run import RunState
from .errors import RunSuspension, ToolError
from .events import FunctionRequest, ToolCallPermissionRequest, ToolCallQuestion
from .permissions import AlwaysAllows, DecidesNow, ShapesRequests, ToolRegistry
from .protocols import DriverTool, PermissionManagerProtocol
from .tools.manager import ToolResult
from .types import Function, ToolOutput

if TYPE_CHECKING:
    from .store.records import Decision

__all__ = ["NobodyToAsk", "SuspendedForApproval", "approve", "ask_during_call"]

logger = logging.getLogger("treadle")


def _denied(fn: Function, reason: object) -> ToolResult:
    text = "Tool execution cancelled by user"
    if reason:
        text = f"{text}: {reason}"
    out = ToolOutput(output=text, observation=text, display="Permission denied", status="cancelled")
    return ToolResult(output=text, observation=text, status="cancelled", error=None, tool_output=out)


async def approve(run: RunState, fn: Function, tool: DriverTool) -> tuple[Function | None, ToolResult | None]:
    """Ask for a decision when the call needs one. Returns (function to run, or a denial)."""
    pm = run.config.permission_manager
    if pm is None:
        if tool.require_approval:
            return None, _denied(fn, f"tool {fn.name} requires approval and no approver is configured")
        return fn, None
    if tool.require_approval:  # the tool's own flag wins over a stale registry
        if not isinstance(pm, ToolRegistry) or pm.tool_require_approval.get(fn.name) is not True:
            pm.register_tool(fn.name, True)
    if not pm.is_approval_required(fn.name):  # not needed, always allowed, or an auto-approve mode
        return fn, None
    name = fn.name
    asked = fn.copy()  # the approver gets a copy
    try:
        return await _ask(run, pm, fn, asked, name)
    except SuspendedForApproval:
        raise
    except Exception as e:  # an approver that fails denies
        logger.exception("permission check failed for %s", name)
        return None, _denied(fn, f"the approval failed: {type(e).__name__}: {e}")


async def _ask(run: RunState, pm: PermissionManagerProtocol, fn: Function, asked: Function,
               name: str) -> tuple[Function | None, ToolResult | None]:
    if isinstance(pm, ShapesRequests):  # optional: a manager may shape its own request
        event = pm.create_permission_event(asked)
    else:
        event = ToolCallPermissionRequest(id=fn.id or "", data=FunctionRequest(id=fn.id or "", tool_name=name,
                                                                                tool=asked))
    if isinstance(event, ToolOutput):  # a pre-execute check failed: report it, do not run
        return None, ToolResult(output=event.output, observation=event.observation, status=event.status,
                                error=event.observation if event.status == "error" else None, tool_output=event)
    event.id = fn.id or ""
    recorded = run.recovery.take_decision(fn.id or "")
    if recorded is not None:  # decided while the run was suspended
        decision = _recorded_decision(asked, recorded, pm)
    else:
        run.emit_item(ev.TOOL_PERMISSION_REQUEST, event)  # journaled within max_delay (no await here: a
        # consumer woken by the event must find the request registered by check_permission)
        if run.config.suspend_for_approval and isinstance(pm, DecidesNow) and \
                not pm.can_decide_now(run.outermost().run_id):
            raise SuspendedForApproval(fn.id or "")
        decision = _read(await pm.check_permission(asked), asked)
    allowed, chosen, reason = decision
    if not allowed:
        return None, _denied(fn, reason)
    if chosen.name != name:  # an edit may change arguments, never the tool
        return None, _denied(fn, "an approval may not change which tool runs")
    if chosen is not asked or chosen.kwargs != fn.kwargs or list(chosen.args) != list(fn.args):
        tool = run.driven().tool_manager.get(name)
        if tool is None:
            return None, _denied(fn, f"no tool {name}")
        try:  # edited arguments are checked before anything runs
            tool.validate(chosen.args, chosen.kwargs)
        except ToolError as e:
            return None, _denied(fn, f"the edited arguments are invalid: {e}")
    if chosen.id != fn.id:
        chosen.id = fn.id
    return chosen, None


class NobodyToAsk(Exception):
    """A question during a tool call that no one can answer (and the run cannot wait for an answer)."""


class SuspendedForApproval(RunSuspension):
    """Raised inside a run that must wait for a decision nobody can give now."""

    def __init__(self, call_id: str, run_id: str | None = None) -> None:
        super().__init__(call_id)
        self.call_id = call_id
        self.run_id = run_id  # the run that waits (a child run's, when an inner agent's call waits)


async def ask_during_call(run: RunState, question_id: str, name: str, proposed: dict[str, Any],
                          details: Mapping[str, object]) -> tuple[bool, dict[str, Any], object]:
    """A question a running tool call asks (an MCP elicitation), decided like an approval: the
    same request event (a ``ToolCallQuestion``), the same deciders (callback, stream, HTTP API,
    ``treadle approve``), the same suspension and journaled decision. ``question_id`` names it
    durably (the same question of the same call after a resume gets the recorded decision).
    Returns ``(accepted, answer fields, reason)``; the proposed answer is ``proposed``."""
    # the question is the request's "thought": every approval surface (stream, HTTP API, CLI, UI) shows it
    asked = Function(id=question_id, name=name, kwargs=dict(proposed), thought=str(details.get("message") or ""))
    pm = run.config.permission_manager
    recorded = run.recovery.take_decision(question_id)
    if recorded is not None:  # answered while the run was suspended (or before a crash)
        if not recorded.approve:
            return False, {}, recorded.reason or "declined"
        return True, dict(recorded.kwargs or proposed), None
    if pm is None:
        raise NobodyToAsk("nobody can answer: the run has no permission manager (give the Runner one)")
    pm.register_tool(name, True)  # a question is always asked (yolo/auto-approve modes take the proposal)
    request = FunctionRequest(id=question_id, tool_name=name, tool=asked.copy(), confirmation_details=details,
                              run_id=run.run_id)
    run.emit_item(ev.TOOL_PERMISSION_REQUEST, ToolCallQuestion(id=question_id, data=request))
    if pm.is_approval_required(name) and isinstance(pm, DecidesNow) and not pm.can_decide_now(run.outermost().run_id):
        if run.config.suspend_for_approval:
            raise SuspendedForApproval(question_id)
        raise NobodyToAsk("nobody can answer now: no approval callback, no stream consumer or UI deciding, "
                          "and the Runner does not suspend (Runner(..., store=..., suspend_for_approval=True))")
    if _takes_details(pm):
        allowed, chosen, reason = _read(await pm.check_permission(asked.copy(), details=details), asked)
    else:
        allowed, chosen, reason = _read(await pm.check_permission(asked.copy()), asked)
    if not allowed:
        return False, {}, reason
    return True, dict(chosen.kwargs or {}), None


class _ChecksWithDetails(Protocol):
    def check_permission(self, function: Function, details: object = None) -> Awaitable[Sequence[object]]: ...


def _takes_details(pm: PermissionManagerProtocol) -> TypeGuard[_ChecksWithDetails]:
    """Whether the manager's ``check_permission`` takes the question's ``details`` (PermissionManager's does)."""
    return "details" in inspect.signature(pm.check_permission).parameters


def _read(decision: Sequence[object], asked: Function) -> tuple[bool, Function, object]:
    """A manager's decision, ``(allowed, function to run, reason or data)``: the function is the
    one asked about unless the decision names another (an edit)."""
    chosen = decision[1] if len(decision) > 1 else None
    return (bool(decision[0]) if decision else False, chosen if isinstance(chosen, Function) else asked,
            decision[2] if len(decision) > 2 else None)


def _recorded_decision(fn: Function, d: Decision,
                       pm: PermissionManagerProtocol) -> tuple[bool, Function, str | None]:
    if not d.approve:
        return False, fn, d.reason or "denied"
    if d.always and isinstance(pm, AlwaysAllows):
        pm.add_to_always_allowed(fn.name)
    if d.kwargs is not None:
        return True, Function(id=fn.id, thought=fn.thought, name=fn.name, kwargs=dict(d.kwargs)), None
    return True, fn, None
