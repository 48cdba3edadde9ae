"""Guardrails: checks around a run — on its input, on its final answer, on each tool call.

A guardrail is a plain function (sync or async) or an Agent. A function takes the value
to check, or ``(ctx, value)`` with a ``GuardrailContext``, and returns its verdict:

* ``None`` or ``True`` — the value passes;
* ``False`` — it fails (the *tripwire*), or a ``str``: it fails, with that message;
* a ``GuardrailResult`` — the verdict spelled out (``tripwire``, ``message``, ``info``,
  and for a tool's output an optional ``replacement``).

An Agent used as a guardrail is run as a child run on the value (as text) and answers
``bool`` (True: it passes) or a model with a ``tripwire: bool`` field (and optionally
``message``). A check that raises fails closed: its error is the tripwire's message.

Every decision is an ``agent.guardrail`` event (journaled and traced like any event).
See docs/guardrails.md.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeGuard, cast

from . import events as ev
from ._guardrail_types import (
    Guardrail,
    GuardrailContext,
    GuardrailDecision,
    GuardrailResult,
    InputGuardrail,
    OutputGuardrail,
    ToolGuardrail,
    Tripwire,
    input_guardrail,
    is_agent,
    output_guardrail,
    tool_guardrail,
)
from .errors import (
    GuardrailTripwireTriggered,
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    ToolGuardrailTripwireTriggered,
    UserError,
)
from .events import GuardrailRunItem
from .types import Function, to_jsonable

if TYPE_CHECKING:
    from ._driven import DrivenAgent
    from ._run import RunState
    from .tools.manager import ToolResult

_Guardrail = Guardrail  # the name treadle._replay_tree imports


def _is_agent(obj: object) -> TypeGuard[DrivenAgent]:
    return is_agent(obj)


__all__ = ["GuardrailContext", "GuardrailDecision", "GuardrailResult", "InputGuardrail", "OutputGuardrail",
           "ToolGuardrail", "input_guardrail", "output_guardrail", "tool_guardrail"]

# ---------------------------------------------------------------------------- evaluation
def _verdict(value: object) -> GuardrailResult:
    if isinstance(value, GuardrailResult):
        return value
    if value is None or value is True:
        return GuardrailResult()
    if value is False:
        return GuardrailResult(True)
    if isinstance(value, str):
        return GuardrailResult(True, value)
    tripwire = value.tripwire if isinstance(value, Tripwire) else None  # an agent's structured answer
    if isinstance(tripwire, bool):
        info: object = to_jsonable(value)
        message = cast("dict[str, object]", info).get("message") if isinstance(info, dict) else None
        return GuardrailResult(tripwire, message if isinstance(message, str) else None, info)
    raise UserError(f"a guardrail returned {value!r}; return None/True (passes), False or a message (fails), "
                    "or a GuardrailResult")


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(to_jsonable(value), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


async def _judge(g: _Guardrail, run: RunState, value: object, ctx: GuardrailContext, key: str) -> GuardrailResult:
    check = g.check
    try:
        if _is_agent(check):
            if run.config.spawn is None:
                raise UserError("an Agent as a guardrail runs inside a Runner's run")
            res = await run.config.spawn(run, check, _as_text(value), key)
            if res.status != "success":
                return GuardrailResult(True, f"the guardrail agent did not answer: {res.error}")
            return _verdict(res.answer)
        if not callable(check):
            raise UserError(f"a guardrail is a function or an Agent, not {check!r}")
        out: object = check(ctx, value) if g.with_ctx else check(value)
        if inspect.isawaitable(out):
            out = await out
        return _verdict(out)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # fail closed: a check that cannot decide does not let the value through
        return GuardrailResult(True, f"the guardrail failed: {type(e).__name__}: {e}")


async def evaluate(g: _Guardrail, run: RunState, value: object, call: Function | None = None,
                   retries_left: bool = False) -> tuple[GuardrailResult, GuardrailDecision]:
    """Run one guardrail and emit its decision event."""
    started = time.time()
    kind = g.kind
    ctx = GuardrailContext(run_id=run.run_id, agent_name=run.driven().name, kind=kind, step=run.step,
                           context=run.config.ctx, usage=run.usage, call=call, depth=run.nesting.depth)
    key = f"guardrail:{kind}:{g.name}:{run.step}:{call.id if call is not None else ''}"
    verdict = await _judge(g, run, value, ctx, key)
    if not verdict.tripwire:
        action = "passed"
    elif kind == "output":
        action = "retry" if retries_left else "ended"
    elif kind in ("tool_input", "tool_output"):
        action = "ended" if isinstance(g, ToolGuardrail) and g.halt else \
            ("blocked" if kind == "tool_input" else "replaced")
    else:
        action = "ended"
    decision = GuardrailDecision(guardrail=g.name, kind=kind, tripped=verdict.tripwire, action=action,
                                 message=verdict.message, info=to_jsonable(verdict.info),
                                 call_id=call.id if call is not None else None,
                                 tool=call.name if call is not None else None, started_at=started, step=run.step)
    run.emit_item(ev.GUARDRAIL, GuardrailRunItem(id=decision.call_id or f"{kind}:{g.name}", data=decision))
    return verdict, decision


_ERRORS: dict[str, type[GuardrailTripwireTriggered]] = {
    "input": InputGuardrailTripwireTriggered, "output": OutputGuardrailTripwireTriggered,
    "tool_input": ToolGuardrailTripwireTriggered, "tool_output": ToolGuardrailTripwireTriggered}
_WHAT = {"input": "input", "output": "output", "tool_input": "tool call", "tool_output": "tool output"}


def tripwire_error(decision: GuardrailDecision) -> GuardrailTripwireTriggered:
    """The typed error a run ends with when a guardrail's tripwire fired."""
    what = _WHAT[decision.kind]
    text = f"{what} guardrail {decision.guardrail!r} tripped"
    if decision.tool:
        text += f" on {decision.tool}"
    if decision.message:
        text += f": {decision.message}"
    return _ERRORS[decision.kind](text, decision.guardrail, decision.info)


async def check_input(run: RunState, guards: Sequence[InputGuardrail]) -> None:
    """Every input guardrail on the run's input, at once; raises the first tripwire."""
    pk = run.prompt_kwargs
    value = pk.get("input_str", pk.get("input", ""))
    results = await asyncio.gather(*(evaluate(g, run, value) for g in guards))
    for verdict, decision in results:
        if verdict.tripwire:
            raise tripwire_error(decision)


async def check_output(run: RunState, answer: object, guards: Sequence[OutputGuardrail]) -> str | None:
    """The output guardrails on a final answer, in order. None: it stands. A message: a
    guardrail with retries left rejected it (the model answers again). Raises the tripwire."""
    for g in guards:
        used = run.guards.retries.get(g.name, 0)
        verdict, decision = await evaluate(g, run, answer, retries_left=used < g.max_retries)
        if not verdict.tripwire:
            continue
        if decision.action != "retry":
            raise tripwire_error(decision)
        run.guards.count_retry(g.name)
        why = verdict.message or "it did not pass a check"
        return f"Error: your final answer was rejected by the {g.name} guardrail: {why}. Give the final answer again."
    return None


def _blocked(fn: Function, g: ToolGuardrail, verdict: GuardrailResult, before: bool) -> ToolResult:
    from .tools.manager import ToolResult

    why = verdict.message or "it did not pass a check"
    if before:
        msg = f"Error: the call to {fn.name} was blocked by the {g.name} guardrail: {why}"
        return ToolResult(observation=msg, status="error", error=msg, error_type="ToolGuardrailTripwireTriggered")
    if verdict.replacement is not None:
        return ToolResult(output=verdict.replacement, observation=verdict.replacement)
    msg = f"Error: the output of {fn.name} was withheld by the {g.name} guardrail: {why}"
    return ToolResult(observation=msg, status="error", error=msg, error_type="ToolGuardrailTripwireTriggered")


async def check_call(run: RunState, fn: Function, guards: Sequence[ToolGuardrail]) -> ToolResult | None:
    """The ``before`` tool guardrails on a call's arguments: None (it may run), or the
    ToolResult the model sees instead. Raises the tripwire of a ``halt`` guardrail."""
    value = {"tool": fn.name, "args": list(fn.args), "kwargs": dict(fn.kwargs)}
    for g in guards:
        if g.when != "before" or not g.applies(fn.name):
            continue
        journaled = run.guards.take_decision(f"{g.name}:{fn.id}")
        if journaled is not None:  # resumed: decided before the crash or suspension, and journaled
            verdict, decision = _reuse(journaled)
        else:
            verdict, decision = await evaluate(g, run, value, call=fn)
        if verdict.tripwire:
            if g.halt:
                raise tripwire_error(decision)
            return _blocked(fn, g, verdict, before=True)
    return None


def _reuse(d: Mapping[str, object]) -> tuple[GuardrailResult, GuardrailDecision]:
    """A journaled decision (an ``agent.guardrail`` event's data), as ``evaluate`` returns one."""
    from pydantic import TypeAdapter

    fields = {k: v for k, v in d.items() if k in GuardrailDecision.__dataclass_fields__}
    decision = TypeAdapter(GuardrailDecision).validate_python(fields)
    return GuardrailResult(decision.tripped, decision.message, decision.info), decision


async def check_result(run: RunState, fn: Function, result: ToolResult, guards: Sequence[ToolGuardrail]
                       ) -> ToolResult:
    """The ``after`` tool guardrails on a call's output: the result, or what replaces it."""
    for g in guards:
        if g.when != "after" or not g.applies(fn.name):
            continue
        verdict, decision = await evaluate(g, run, result.output, call=fn)
        if verdict.tripwire:
            if g.halt:
                raise tripwire_error(decision)
            return _blocked(fn, g, verdict, before=False)
    return result
