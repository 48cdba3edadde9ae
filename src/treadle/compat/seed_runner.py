"""The planner plug point: run any object with an Agent's shape, as the seed's Runner did.

The seed's Runner drove ``agent.planner.call/acall(prompt_kwargs=, model_kwargs=, use_cache=,
id=) -> GeneratorOutput`` (whose ``data`` is a ``Function``) and ``agent.tool_manager.execute_func
/ execute_func_async(func) -> FunctionOutput``. Users' tests build such agents by hand (a
``DummyAgent`` with a ``FakePlanner``), and ``Agent(planner=...)`` plugs one in. Here that
protocol is adapted onto treadle's one driver (``treadle.loop.drive``): the planner becomes the
run's "model", its Function the parsed reply; the prompt is the planner's business (it gets the
seed's ``prompt_kwargs``: the run's ``input_str``…, ``step_history`` — the run's live list —,
``max_steps`` and, with a memory, ``chat_history_str``). Everything else (events, approvals,
memory, cancellation, endings) is treadle's, unchanged.

``call`` uses the planner's ``call`` and the tool manager's ``execute_func``; ``acall`` and
``astream`` use ``acall`` and ``execute_func_async`` (each falls back to the other when missing).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import TYPE_CHECKING, Any, AsyncIterator

from pydantic import BaseModel

from .._plugs import check_plug, describe
from .._run import SeedCall
from ..errors import ModelResponseError, PlugError, UserError
from ..events import RunItemStreamEvent, StreamEvent, ToolCallActivityRunItem, ToolCallRunItem
from ..models._guards import is_async_iterable, is_dict, is_list, is_tuple
from ..models.adalflow_client import OutputFields, usage_of
from ..models.base import ModelDelta, ModelRequest, ModelResponse
from ..permissions import PermissionManagerProtocol, current_run_id
from ..protocols import SeedPlanner
from ..tools.manager import ActivitySink, ToolManager, ToolResult, _drain_async, _drain_sync
from ..types import Function, FunctionOutput, GeneratorOutput, RunnerResult, StepOutput, ToolOutput
from ._shapes import (
    AnswerType,
    ContextMap,
    Executed,
    ExecutesAsync,
    ExecutesSync,
    Failed,
    FinalFlags,
    FunctionLike,
    ListsTools,
    Named,
    NeedsApproval,
    ObservationLimit,
    PlansAsync,
    PlansSync,
    SeedRunnerView,
    ThinkingModel,
)

if TYPE_CHECKING:
    from .._run import RunState

__all__ = ["SeedAgent", "SeedRunnerMixin", "driven_agent", "seed_result_sink"]

AGENT_SHAPE = ("planner", "tool_manager", "max_steps")


def driven_agent(runner: SeedRunnerView) -> Any:
    """What the driver runs: a treadle Agent as it is, anything else agent-shaped through SeedAgent."""
    from ..agent import Agent
    from ..planner import Planner

    agent = runner.agent
    if isinstance(agent, Agent) and isinstance(agent.planner, Planner) and isinstance(agent.tool_manager, ToolManager):
        return agent
    missing = [a for a in AGENT_SHAPE if not hasattr(agent, a)]
    if missing:
        raise PlugError(f"Runner needs an Agent, or an object with an Agent's shape (planner, tool_manager, "
                        f"max_steps, answer_data_type); {describe(agent)} has no {', '.join(missing)}")
    if agent.planner is not None and not isinstance(agent.planner, Planner):
        check_plug(agent.planner, SeedPlanner, "planner", any_of=("call", "acall"))
    return SeedAgent(runner)


class SeedAgent:
    """An agent-shaped object as the driver sees an Agent."""

    model_kwargs: dict[str, object] = {}  # the seed's planner merges its own; the runner passes the call's only
    # an agent in AdalFlow's shape has no guardrails or handoffs
    input_guardrails: tuple[()] = ()
    output_guardrails: tuple[()] = ()
    tool_guardrails: tuple[()] = ()
    handoffs: tuple[()] = ()

    def __init__(self, runner: SeedRunnerView) -> None:
        self.runner = runner
        self.source = runner.agent
        self.name = self.source.name if isinstance(self.source, Named) else type(self.source).__name__
        self.max_observation_chars = self.source.max_observation_chars \
            if isinstance(self.source, ObservationLimit) else 20_000
        self.planner = _PlannerSteps(self)
        self.model = _PlannerModel(self)

    @property
    def max_steps(self) -> int:
        return self.source.max_steps

    @property
    def answer_data_type(self) -> object:
        return (self.source.answer_data_type if isinstance(self.source, AnswerType) else None) or str

    @property
    def tool_manager(self) -> ToolManager | _SeedTools:
        tm: object = self.source.tool_manager
        return tm if isinstance(tm, ToolManager) else _SeedTools(tm, self.runner)


def _run_of(runner: SeedRunnerView, run_id: str | None) -> RunState | None:
    return runner._active.get(run_id) if run_id is not None else None


class _PlannerModel:
    """The seed planner, asked once per step, as the run's model."""

    native_tools = False
    provider = "seed-planner"

    def __init__(self, agent: SeedAgent) -> None:
        self.agent = agent
        self.name = type(agent.source.planner).__name__

    async def _ask(self, request: ModelRequest) -> tuple[object, OutputFields]:
        """The planner's output for this step, and its fields."""
        runner = self.agent.runner
        run = _run_of(runner, request.run_id)
        planner: object = self.agent.source.planner
        if planner is None:
            raise UserError("the agent has no planner")
        pk: dict[str, object] = dict(run.prompt_kwargs) if run is not None else {}
        if runner.conversation_memory is not None:
            pk.setdefault("chat_history_str", "")
        pk["step_history"] = run.step_history if run is not None else []
        pk["max_steps"] = run.max_steps if run is not None else self.agent.max_steps
        seed = run.config.seed_call if run is not None else SeedCall()
        mk: dict[str, object] = dict(request.model_kwargs)
        use_cache, run_id = seed.use_cache, seed.id
        sync = seed.face == "call"
        out: object
        if isinstance(planner, PlansSync) and (sync or not isinstance(planner, PlansAsync)):
            out = planner.call(prompt_kwargs=pk, model_kwargs=mk, use_cache=use_cache, id=run_id)
        elif isinstance(planner, PlansAsync):
            out = planner.acall(prompt_kwargs=pk, model_kwargs=mk, use_cache=use_cache, id=run_id)
        else:
            raise UserError(f"the planner {type(planner).__name__} has neither call nor acall")
        if inspect.isawaitable(out):
            out = await out
        fields = OutputFields(out)
        if not fields.has_data:
            raise ModelResponseError(f"Expected GeneratorOutput, but got {type(out)}")
        return out, fields

    def _response(self, out: object, fields: OutputFields) -> ModelResponse:
        raw = fields.raw_response
        return ModelResponse(text=raw if isinstance(raw, str) else None, raw=out, model_name=self.name,
                             usage=usage_of(fields.usage), thinking=fields.thinking)

    async def request(self, request: ModelRequest) -> ModelResponse:
        return self._response(*await self._ask(request))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        out, fields = await self._ask(request)
        raw = fields.raw_response
        if is_async_iterable(raw):  # a streamed LLM reply: pass its events on
            async for event in raw:
                yield ModelDelta(text=event if isinstance(event, str) else None, raw=event)
        yield self._response(out, fields)


class _PlannerSteps:
    """The driver's planner hooks: the seed planner keeps its own prompt, so messages stay empty."""

    training = False

    def __init__(self, agent: SeedAgent) -> None:
        self.agent = agent

    @staticmethod
    def mode(model: object) -> str:
        return "json"

    @staticmethod
    def final_style(model: object) -> str:
        return "seed"

    def initial_messages(self, mode: str, prompt_kwargs: dict[str, object],
                         final_style: str = "seed") -> list[dict[str, Any]]:
        return []

    def build_request(self, mode: str, messages: list[dict[str, Any]], model_kwargs: dict[str, Any], run_id: str,
                      step: int, final_style: str = "seed") -> ModelRequest:
        return ModelRequest(messages=messages, model_kwargs=model_kwargs, run_id=run_id, step=step)

    def parse_response(self, mode: str, resp: ModelResponse) -> GeneratorOutput[list[Function]]:
        fields = OutputFields(resp.raw)
        data, raw = fields.data, fields.raw_response
        if data is None:
            error = fields.error or "Error: the planner returned no action"
            return GeneratorOutput(data=None, error=str(error), raw_response=raw)
        items = data if is_list(data) else [data]
        calls: list[Function] = []
        for item in items:
            fn = _as_function(item)
            if fn is None:
                return GeneratorOutput(data=None, raw_response=raw,
                                       error=f"Error: the planner's output is not a Function: {type(item).__name__}")
            calls.append(fn)
        thinking = fields.thinking
        source = self.agent.source
        if thinking is not None and isinstance(source, ThinkingModel) and source.is_thinking_model:
            for fn in calls:
                fn.thought = thinking
        return GeneratorOutput(data=calls, raw_response=raw, thinking=thinking, usage=resp.usage)

    def add_step_messages(self, *args: object, **kwargs: object) -> None:
        pass

    def add_error_messages(self, *args: object, **kwargs: object) -> None:
        pass


def _as_function(item: object) -> Function | None:
    if isinstance(item, Function):
        return item  # the planner's own object (a subclass too): step_history holds it as given
    if not isinstance(item, FunctionLike) or not isinstance(item.name, str):
        return None
    args, kwargs = item.args, item.kwargs
    final = item._is_answer_final if isinstance(item, FinalFlags) else None
    return Function(id=item.id if isinstance(item.id, str) else None,
                    thought=item.thought if isinstance(item.thought, str) else None, name=item.name,
                    args=list(args) if is_list(args) else [], kwargs={str(k): v for k, v in kwargs.items()}
                    if is_dict(kwargs) else {}, _is_answer_final=final if isinstance(final, bool) else None,
                    _answer=item._answer if isinstance(item, FinalFlags) else None)


class _ToolView:
    """What the driver asks of a tool (approval flag, arguments check) for a seed tool manager."""

    _ctx_params: list[str] = []
    max_retries = 0

    def __init__(self, name: str, require_approval: bool) -> None:
        self.name = name
        self.require_approval = require_approval

    def validate(self, args: object, kwargs: dict[str, object]) -> dict[str, object]:
        return dict(kwargs)


class _SeedTools:
    """A seed-style tool manager (``execute_func`` / ``execute_func_async``) as the driver's."""

    _toolsets: dict[int, object] = {}
    version = 0

    def __init__(self, tm: object, runner: SeedRunnerView) -> None:
        self.tm = tm
        self.runner = runner

    def refresh(self) -> None:
        pass

    @property
    def tools(self) -> list[object]:
        tools = self.tm.tools if isinstance(self.tm, ListsTools) else None
        return list(tools) if is_list(tools) or is_tuple(tools) else []

    def get(self, name: str) -> _ToolView:
        context_map = self.tm._context_map if isinstance(self.tm, ContextMap) else None
        tool = context_map.get(name) if is_dict(context_map) else None
        return _ToolView(name, bool(tool.require_approval) if isinstance(tool, NeedsApproval) else False)

    async def execute(self, call: Function, make_ctx: object = None, on_activity: ActivitySink | None = None
                      ) -> ToolResult:
        run = _run_of(self.runner, current_run_id.get())
        sync = run is not None and run.config.seed_call.face == "call"
        try:
            fo = await _execute(self.tm, call, sync)
            output: object = fo.output if isinstance(fo, Executed) else fo
            error = fo.error if isinstance(fo, Failed) else None
            if inspect.isawaitable(output):
                output = await output
            if inspect.isasyncgen(output):
                output = await _drain_async(output, call.id, on_activity)
            elif inspect.isgenerator(output):
                output = _drain_sync(output, call.id, on_activity)
        except Exception as e:  # the seed ended the run here (bug B2): the model is told instead
            msg = f"Error executing {call.name}: {type(e).__name__}: {e}"
            return ToolResult(observation=msg, status="error", error=msg, error_type="ToolExecutionError")
        if error:
            msg = str(error)
            return ToolResult(output=output, observation=msg, status="error", error=msg,
                              error_type="ToolExecutionError")
        if isinstance(output, ToolOutput):
            err = output.observation if output.status == "error" else None
            return ToolResult(output=output.output, observation=output.observation, status=output.status,
                              error=err, tool_output=output)
        return ToolResult(output=output, observation=output)


async def _execute(tm: object, func: Function, sync: bool) -> object:
    if tm is None:
        raise UserError("the agent has no tool manager")
    result: object
    if isinstance(tm, ExecutesSync) and (sync or not isinstance(tm, ExecutesAsync)):
        result = tm.execute_func(func)
    elif isinstance(tm, ExecutesAsync):
        result = tm.execute_func_async(func)
    elif callable(tm):
        result = tm(func, "execute")
    else:
        raise UserError(f"the tool manager {type(tm).__name__} has no execute_func")
    if inspect.isawaitable(result):
        result = await result
    return result


# ------------------------------------------------------------------ seed-compatibility endings
def seed_result_sink(event: StreamEvent) -> None:
    """With the seed-compatibility switch on: a run that ended without an answer carries the
    seed's text in ``answer`` (placed first among the run's sinks, before anyone reads it)."""
    if type(event) is not RunItemStreamEvent or event.name != "agent.execution_complete":
        return
    result = event.item.data
    if not isinstance(result, RunnerResult) or result.status == "success":
        return
    if result.status == "max_steps":
        import re

        m = re.search(r"after (\d+) steps \(max_steps: (\d+)\)", result.error or "")
        steps, max_steps = m.groups() if m else ("?", "?")
        result.answer = f"No output generated after {steps} steps (max_steps: {max_steps})"
        result.error = None
    else:
        result.answer = result.error


# ------------------------------------------------------------------ the seed Runner's helpers
class SeedRunnerMixin:
    """The seed Runner's helper methods that ported code and tests call directly."""

    agent: Any  # the agent-shaped object the user gave (treadle.Runner's attribute)
    permission_manager: PermissionManagerProtocol | None
    answer_data_type: Any  # a type, or a typing form (list[int], a union…)
    _last_run: RunState | None

    @property
    def is_thinking_model(self) -> bool:
        return isinstance(self.agent, ThinkingModel) and bool(self.agent.is_thinking_model)

    @property
    def _current_task(self) -> asyncio.Task[object] | None:
        """The task of the most recent run started by ``astream`` (the seed's attribute)."""
        run = self._last_run
        return run.cancellation.task if run is not None else None

    def _check_last_step(self, step: object) -> bool:
        """True when ``step`` is the final answer (the seed's ``_is_answer_final`` flag)."""
        return isinstance(step, FinalFlags) and bool(step._is_answer_final)

    def _get_final_answer(self, function: object) -> object:
        if isinstance(function, FinalFlags):
            return self._process_data(function._answer)
        return None

    def _process_data(self, data: object, id: str | None = None) -> object:
        """Convert a final answer to the answer type (treadle's conversion; falsy answers are
        valid). For pydantic models and dataclasses a string must be a JSON object, as in the seed.
        Raises ValueError("Error processing output: …")."""
        import dataclasses

        from ..errors import AnswerConversionError
        from ..planner import convert_answer

        tp = self.answer_data_type or str
        try:
            if isinstance(data, str) and isinstance(tp, type) and (
                    dataclasses.is_dataclass(tp) or issubclass(tp, BaseModel)):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as e:
                    raise ValueError(f"Invalid JSON in data: {e}") from None
                if not isinstance(data, dict):
                    raise ValueError(f"Expected dict after JSON parsing, got {type(data)}")
            return convert_answer(data, tp)
        except (ValueError, AnswerConversionError) as e:
            raise ValueError(f"Error processing output: {e}") from None

    def _create_runner_result(self, answer: object, step_history: list[StepOutput], error: str | None = None
                              ) -> RunnerResult[object]:
        return RunnerResult(answer=answer, step_history=list(step_history), error=error,
                            status="success" if error is None else "error")

    @staticmethod
    def _denied_output(func: Function) -> FunctionOutput:
        text = "Tool execution cancelled by user"
        return FunctionOutput(name=func.name, input=func, output=ToolOutput(
            output=text, observation=text, display="Permission denied", status="cancelled"))

    async def _tool_execute_async(self, func: Function, streaming_result: asyncio.Queue[StreamEvent] | None = None
                                  ) -> FunctionOutput:
        """Approve (through the permission manager) and execute one call; a FunctionOutput."""
        pm = self.permission_manager
        if pm is not None:
            decision = await pm.check_permission(func)
            if not decision[0]:
                return self._denied_output(func)
            chosen = decision[1]
            func = chosen if isinstance(chosen, Function) else func
        if streaming_result is not None:
            streaming_result.put_nowait(RunItemStreamEvent(name="agent.tool_call_start",
                                                           item=ToolCallRunItem(data=func, id=func.id)
                                                           if func.id is not None else ToolCallRunItem(data=func)))
        result = await _execute(self.agent.tool_manager, func, sync=False)
        if not isinstance(result, FunctionOutput):
            raise ValueError("Result is not a FunctionOutput")
        return result

    def _tool_execute_sync(self, func: Function) -> FunctionOutput:
        """``_tool_execute_async`` from synchronous code (execute_func is preferred)."""
        from .._sync import run_sync

        pm = self.permission_manager
        if pm is not None:
            decision = run_sync(pm.check_permission(func))
            if not decision[0]:
                return self._denied_output(func)
            chosen = decision[1]
            func = chosen if isinstance(chosen, Function) else func
        result = run_sync(_execute(self.agent.tool_manager, func, sync=True))
        if not isinstance(result, FunctionOutput):
            raise ValueError("Result is not a FunctionOutput")
        return result

    async def stream_tool_execution(self, function: Function, tool_call_id: str, tool_call_name: str,
                                    streaming_result: asyncio.Queue[StreamEvent]
                                    ) -> tuple[FunctionOutput, object, object]:
        """Execute one call, emitting start/activity/complete events into ``streaming_result``;
        returns (FunctionOutput, output, observation) as in the seed."""
        from ..events import ToolOutputRunItem

        result = await self._tool_execute_async(function, streaming_result)
        output: object = result.output

        def activity(item: ToolCallActivityRunItem) -> None:
            streaming_result.put_nowait(RunItemStreamEvent(name="agent.tool_call_activity", item=item))

        if inspect.isawaitable(output):
            output = await output
        elif inspect.isasyncgen(output):
            output = await _drain_async(output, tool_call_id, activity)
        elif inspect.isgenerator(output):
            output = _drain_sync(output, tool_call_id, activity)
        streaming_result.put_nowait(RunItemStreamEvent(name="agent.tool_call_complete", item=ToolOutputRunItem(
            id=tool_call_id, data=FunctionOutput(name=function.name, input=function, output=output,
                                                 error=result.error), error=result.error)))
        observation: object = output.observation if isinstance(output, ToolOutput) else output
        return result, output, observation
