"""Human approval of tool calls.

The runner asks ``is_approval_required(name)`` for each call (a tool built with
``require_approval=True`` always needs it), emits ``agent.tool_permission_request`` with
``create_permission_event(function)``, then waits on ``await check_permission(function)``
for ``(allowed, function_to_run, data)``. A denied call becomes a ``ToolOutput`` with
status ``cancelled`` that the model sees, with the reason.

Decisions come from, in order: an approval callback (sync or async), or the run's own
decision channel — ``RunnerStreamingResult.approve/deny/edit`` in ``astream``, or
``PermissionManager.decide(run_id, call_id, ...)`` from another thread (a web server, a
terminal prompt). Waiting costs nothing (a future per request) and ends in a denial after
``timeout`` seconds. Nothing that needs approval runs without a decision: with no callback
and no channel, the call is denied at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, Union, cast, runtime_checkable

from ._factories import new_dict
from ._plugs import describe
from .errors import UserError
from .events import FunctionRequest, ToolCallPermissionRequest
from .types import Function, FunctionDefinition, ToolOutput

__all__ = [
    "AlwaysAllows",
    "ApprovalOutcome",
    "ApprovalResponse",
    "DecidesNow",
    "DecisionChannels",
    "KnowsTools",
    "ListsPending",
    "PermissionManager",
    "PermissionManagerProtocol",
    "ShapesRequests",
    "ToolRegistry",
    "approval_tools",
    "current_channel_id",
    "current_run_id",
]

current_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("treadle_run_id", default=None)
# the run whose decision channel serves the current run: itself, or for an agent called as a
# tool (a child run), the outermost run — one human, one channel, however deep the nesting
current_channel_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("treadle_channel_id", default=None)
"""The id of the run whose task is executing (set by the runner)."""


class ApprovalOutcome(str, enum.Enum):
    PROCEED_ONCE = "proceed_once"
    PROCEED_ALWAYS = "proceed_always"
    CANCEL = "cancel"


@dataclass(slots=True)
class ApprovalResponse:
    """A decision. ``kwargs`` (or a whole ``function``) replaces the call's arguments:
    an edit, validated against the tool's schema before the tool runs. ``reason`` is shown
    to the model when the call is denied."""

    outcome: ApprovalOutcome
    response_data: object = None
    function: Function | None = None
    reason: str | None = None
    kwargs: dict[str, object] | None = None

    @classmethod
    def approve(cls, *, always: bool = False, kwargs: Mapping[str, object] | None = None) -> ApprovalResponse:
        return cls(ApprovalOutcome.PROCEED_ALWAYS if always else ApprovalOutcome.PROCEED_ONCE,
                   kwargs=dict(kwargs) if kwargs is not None else None)

    @classmethod
    def deny(cls, reason: str | None = None) -> ApprovalResponse:
        return cls(ApprovalOutcome.CANCEL, reason=reason)


Decision = Union[ApprovalOutcome, ApprovalResponse, bool]
ApprovalCallback = Callable[[FunctionRequest], Union[Decision, Awaitable[Decision]]]


@runtime_checkable
class PermissionManagerProtocol(Protocol):
    """What the Runner needs from a permission manager.

    Optional hooks, used when present: ``create_permission_event(function) ->
    ToolCallPermissionRequest | ToolOutput`` (a ToolOutput vetoes the call), ``set_tool_manager``,
    ``open_channel``/``close_channel``/``can_decide_now(run_id)`` (decisions from a stream or
    a UI), ``add_to_always_allowed(name)`` and ``tool_require_approval`` (name -> flag)."""

    def register_tool(self, name: str, require_approval: bool = True) -> None: ...

    def is_approval_required(self, name: str) -> bool: ...

    async def check_permission(self, function: Function) -> Sequence[object]: ...


# ------------------------------------------------------------------ optional hooks of a permission manager
@runtime_checkable
class KnowsTools(Protocol):
    """Optional: told the agent's tool manager (``PermissionManager(tool_manager=)``)."""

    def set_tool_manager(self, tool_manager: object) -> None: ...


@runtime_checkable
class ToolRegistry(Protocol):
    """Optional: the approval flags registered so far, by tool name."""

    tool_require_approval: dict[str, bool]


@runtime_checkable
class ShapesRequests(Protocol):
    """Optional: makes the request event of a call, or vetoes it (a ToolOutput)."""

    def create_permission_event(self, function: Function) -> ToolCallPermissionRequest | ToolOutput: ...


@runtime_checkable
class DecidesNow(Protocol):
    """Optional: whether a decision for the run can come in while it waits (else it may suspend)."""

    def can_decide_now(self, run_id: str | None) -> bool: ...


@runtime_checkable
class AlwaysAllows(Protocol):
    """Optional: remembers an "always" approval recorded for a suspended run."""

    def add_to_always_allowed(self, name: str) -> None: ...


@runtime_checkable
class DecisionChannels(Protocol):
    """Optional: a run's decisions from outside it (a stream consumer, a UI): its channel opened and closed."""

    def open_channel(self, run_id: str) -> None: ...

    def close_channel(self, run_id: str) -> None: ...


@runtime_checkable
class ListsPending(Protocol):
    """Optional: the requests waiting for a decision, and answering one (the stream's approve/deny/edit)."""

    def pending(self, run_id: str | None = None) -> list[FunctionRequest]: ...

    def decide(self, run_id: str, call_id: str, decision: Decision) -> bool: ...


@runtime_checkable
class SeedToolLookup(Protocol):
    """The seed's tool manager, as a permission manager reads it (a tool's ``pre_execute_callback``)."""

    def get_function_tool_by_name(self, name: str) -> object: ...


@runtime_checkable
class PreExecuteChecked(Protocol):
    pre_execute_callback: Callable[..., object] | None


@runtime_checkable
class _Vetoed(Protocol):
    error: object


@dataclass(eq=False)
class _Pending:
    request: FunctionRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Decision]


@dataclass(eq=False)
class _Channel:
    """A run that takes decisions from outside (a stream consumer, a UI)."""

    pending: dict[str, _Pending] = field(default_factory=new_dict)


class PermissionManager:
    """Gates tools that need approval.

    Args:
        approval_callback: ``callback(FunctionRequest) -> decision`` (sync or async); a
            decision is True/False, an ``ApprovalOutcome`` or an ``ApprovalResponse``.
        approval_mode: ``"default"`` asks for tools that need approval; ``"auto_approve"``
            and ``"yolo"`` approve them without asking (a decision made by configuration).
            Blocked tools are always denied.
        tool_manager: the seed's: the tools whose ``require_approval`` flags are registered, and
            whose ``pre_execute_callback`` (called with the call's kwargs) may veto a call or give
            ``confirmation_details`` to show with the request. The Runner sets it.
        timeout: seconds to wait for a decision; then the call is denied.

    ``pending_approvals`` (request id -> FunctionRequest) holds the requests being decided.
    """

    def __init__(self, approval_callback: ApprovalCallback | None = None,
                 approval_mode: Literal["default", "auto_approve", "yolo"] = "default",
                 tool_manager: object = None, *, timeout: float | None = 600.0) -> None:
        if approval_callback is not None and not callable(approval_callback):
            raise UserError(f"approval_callback must be callable (an approver: FunctionRequest -> decision), not "
                            f"{describe(approval_callback)}")
        self.approval_callback = approval_callback
        self.approval_mode = approval_mode
        self.timeout = timeout
        self.tool_require_approval: dict[str, bool] = {}
        self.always_allowed_tools: set[str] = set()
        self.blocked_tools: set[str] = set()
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()
        self.pending_approvals: dict[str, FunctionRequest] = {}
        self._tool_manager: object = None
        if tool_manager is not None:
            self.set_tool_manager(tool_manager)

    # ------------------------------------------------------------------ configuration
    def set_tool_manager(self, tool_manager: object) -> None:
        self._tool_manager = tool_manager
        for name in approval_tools(tool_manager):
            self.register_tool(name, True)

    def register_tool(self, name: str, require_approval: bool = True) -> None:
        self.tool_require_approval[name] = require_approval

    def add_to_always_allowed(self, name: str) -> None:
        self.always_allowed_tools.add(name)

    def add_to_blocked(self, name: str) -> None:
        self.blocked_tools.add(name)

    def remove_from_always_allowed(self, name: str) -> None:
        self.always_allowed_tools.discard(name)

    def remove_from_blocked(self, name: str) -> None:
        self.blocked_tools.discard(name)

    def is_approval_required(self, name: str) -> bool:
        if name in self.blocked_tools:
            return True
        if self.approval_mode in ("yolo", "auto_approve"):
            return False
        if name in self.always_allowed_tools:
            return False
        return self.tool_require_approval.get(name, False)

    # ------------------------------------------------------------------ the runner's side
    def get_pending_approvals(self) -> dict[str, FunctionRequest]:
        return dict(self.pending_approvals)

    def create_permission_event(self, function: Function) -> ToolCallPermissionRequest | ToolOutput:
        """The request to show for a call; a ToolOutput (status "error") instead when the tool's
        ``pre_execute_callback`` vetoes it (raises, or returns something with an ``error``)."""
        request = FunctionRequest(id=function.id or "", tool_name=function.name, tool=function,
                                  run_id=current_run_id.get())
        tm = self._tool_manager
        tool = tm.get_function_tool_by_name(function.name) if isinstance(tm, SeedToolLookup) else None
        check = tool.pre_execute_callback if isinstance(tool, PreExecuteChecked) else None
        if check is not None:
            try:
                details = check(**(function.kwargs or {}))
            except Exception as e:
                msg = f"Error in the pre-execute check of {function.name}: {type(e).__name__}: {e}"
                return ToolOutput(output=msg, observation=msg, status="error")
            error = details.error if isinstance(details, _Vetoed) else None
            if error is not None:
                return ToolOutput(output=error, observation=str(error), status="error")
            request.confirmation_details = details
        return ToolCallPermissionRequest(id=request.id, data=request)

    async def check_permission(self, function: Function, details: object = None
                               ) -> tuple[bool, Function | None, object]:
        """Decide on one call: ``(allowed, function to run, response data or reason)``. ``details`` go to
        the deciders with the request (``confirmation_details``: a question's form, for one)."""
        name = function.name
        if name in self.blocked_tools:
            return False, None, f"tool {name} is blocked"
        if not self.is_approval_required(name):
            return True, function, None
        run_id = current_run_id.get()
        request = FunctionRequest(id=function.id or "", tool_name=name, tool=function, run_id=run_id,
                                  confirmation_details=details)
        self.pending_approvals[request.id] = request
        try:
            if self.approval_callback is not None:
                decision = await self._with_timeout(self._call_back(request))
            else:
                channel_id = current_channel_id.get() or run_id
                channel = self._channels.get(channel_id) if channel_id is not None else None
                if channel is None:
                    return False, None, "no approver is configured for this run"
                # registered before the first await, so a consumer woken by the request event finds it
                pending = self._register(channel, request)
                try:
                    decision = await self._with_timeout(pending.future)
                finally:
                    with self._lock:
                        channel.pending.pop(request.id, None)
        except asyncio.TimeoutError:
            return False, None, f"no decision within {self.timeout:g} s"
        except Exception as e:
            return False, None, f"approval failed: {type(e).__name__}: {e}"
        finally:
            self.pending_approvals.pop(request.id, None)
        return self._apply(function, decision)

    async def _call_back(self, request: FunctionRequest) -> Decision:
        assert self.approval_callback is not None
        decision = self.approval_callback(request)
        if inspect.isawaitable(decision):
            decision = await decision
        return decision  # type: ignore[return-value]

    async def _with_timeout(self, aw: Awaitable[Decision]) -> Decision:
        if self.timeout is None:
            return await aw
        return await asyncio.wait_for(aw, self.timeout)

    def _register(self, channel: _Channel, request: FunctionRequest) -> _Pending:
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop, loop.create_future())
        with self._lock:
            channel.pending[request.id] = pending
        return pending

    def _apply(self, function: Function, decision: Decision) -> tuple[bool, Function | None, object]:
        if isinstance(decision, bool):
            return (True, function, None) if decision else (False, None, None)
        if isinstance(decision, ApprovalOutcome):
            decision = ApprovalResponse(decision)
        if not isinstance(cast(object, decision), ApprovalResponse):  # an untyped caller's decision
            return False, None, f"invalid decision {decision!r}"
        if decision.outcome == ApprovalOutcome.CANCEL:
            return False, None, decision.reason or decision.response_data
        if decision.outcome == ApprovalOutcome.PROCEED_ALWAYS:
            self.always_allowed_tools.add(function.name)
        chosen = decision.function or function
        if decision.kwargs is not None:
            chosen = Function(id=function.id, thought=function.thought, name=function.name, args=[],
                              kwargs=dict(decision.kwargs))
        elif function.name == "clarify" and decision.response_data is not None:  # the seed's answer to a question
            chosen = Function(id=function.id, thought=function.thought, name=function.name, args=list(function.args),
                              kwargs={**function.kwargs, "user_response": decision.response_data})
        return True, chosen, decision.response_data

    def can_decide_now(self, run_id: str | None) -> bool:
        """Whether a decision for this run can come in while it waits (a callback, or an
        open channel); if not, a run that may suspend does so instead of being denied."""
        return self.approval_callback is not None or (run_id is not None and run_id in self._channels)

    # ------------------------------------------------------------------ decision channels
    def open_channel(self, run_id: str) -> None:
        """Let ``run_id`` take decisions from outside (``decide``) when there is no callback."""
        with self._lock:
            self._channels.setdefault(run_id, _Channel())

    def close_channel(self, run_id: str) -> None:
        """The run ended: pending requests are denied, the channel is dropped."""
        with self._lock:
            channel = self._channels.pop(run_id, None)
        if channel is not None:
            for p in list(channel.pending.values()):
                _resolve(p, ApprovalResponse.deny("the run ended"))

    def pending(self, run_id: str | None = None) -> list[FunctionRequest]:
        """Requests waiting for a decision (of one run, or of all)."""
        with self._lock:
            channels = [self._channels.get(run_id)] if run_id is not None else list(self._channels.values())
            return [p.request for c in channels if c is not None for p in c.pending.values()]

    def decide(self, run_id: str, call_id: str, decision: Decision) -> bool:
        """Answer one pending request of one run (thread-safe). False when that run has no
        such pending request: a decision never carries over to another call or run."""
        with self._lock:  # the first decision takes the request: any later one, from any thread, gets False
            channel = self._channels.get(run_id)
            pending = channel.pending.pop(call_id, None) if channel is not None else None
            if pending is None or pending.future.done():
                return False
        _resolve(pending, decision)
        return True

    def approve(self, run_id: str, call_id: str, *, always: bool = False,
                kwargs: Mapping[str, object] | None = None) -> bool:
        return self.decide(run_id, call_id, ApprovalResponse.approve(always=always, kwargs=kwargs))

    def deny(self, run_id: str, call_id: str, reason: str | None = None) -> bool:
        return self.decide(run_id, call_id, ApprovalResponse.deny(reason))


def approval_tools(tool_manager: object) -> list[str]:
    """The names of the tools of ``tool_manager`` (a treadle ``ToolManager`` or the seed's) built with
    ``require_approval=True``."""
    from .tools.function_tool import FunctionTool
    from .tools.manager import ToolManager

    if isinstance(tool_manager, ToolManager):
        tools: list[object] = list(tool_manager.tools)
    elif isinstance(tool_manager, _HasTools):
        tools = list(tool_manager.tools)
    else:
        return []
    names: list[str] = []
    for t in tools:
        if isinstance(t, FunctionTool):
            if t.require_approval:
                names.append(t.name)
        elif isinstance(t, _ApprovalFlagged) and t.require_approval:
            if isinstance(t, _Named) and t.name:
                names.append(t.name)
            elif isinstance(t, _Defined):
                names.append(t.definition.func_name)
    return names


@runtime_checkable
class _HasTools(Protocol):
    @property
    def tools(self) -> Iterable[object]: ...


@runtime_checkable
class _ApprovalFlagged(Protocol):
    require_approval: object


@runtime_checkable
class _Defined(Protocol):
    @property
    def definition(self) -> FunctionDefinition: ...


@runtime_checkable
class _Named(Protocol):
    name: str


def _resolve(p: _Pending, decision: Decision) -> None:
    def set_result() -> None:
        if not p.future.done():
            p.future.set_result(decision)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is p.loop:
        set_result()
    else:
        try:
            p.loop.call_soon_threadsafe(set_result)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
