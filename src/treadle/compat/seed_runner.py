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

import inspect
import json
from typing import Any, AsyncIterator

from .._plugs import check_plug, describe
from .._run import SeedCall
from ..errors import ModelResponseError, PlugError, UserError
from ..events import RunItemStreamEvent, ToolCallActivityRunItem, ToolCallRunItem
from ..models.base import ModelDelta, ModelRequest, ModelResponse
from ..permissions import current_run_id
from ..protocols import SeedPlanner
from ..tools.manager import ToolManager, ToolResult, _drain_async, _drain_sync
from ..types import Function, FunctionOutput, GeneratorOutput, RunnerResult, ToolOutput

__all__ = ["SeedAgent", "SeedRunnerMixin", "driven_agent", "seed_result_sink"]

AGENT_SHAPE = ("planner", "tool_manager", "max_steps")


def driven_agent(runner: Any) -> Any:
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

    model_kwargs: dict[str, Any] = {}  # the seed's planner merges its own; the runner passes the call's only
    # an agent in AdalFlow's shape has no guardrails or handoffs
    input_guardrails: tuple[()] = ()
    output_guardrails: tuple[()] = ()
    tool_guardrails: tuple[()] = ()
    handoffs: tuple[()] = ()

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.source = runner.agent
        self.name = getattr(self.source, "name", type(self.source).__name__)
        self.max_observation_chars = getattr(self.source, "max_observation_chars", 20_000)
        self.planner = _PlannerSteps(self)
        self.model = _PlannerModel(self)

    @property
    def max_steps(self) -> int:
        return self.source.max_steps

    @property
    def answer_data_type(self) -> Any:
        return getattr(self.source, "answer_data_type", None) or str

    @property
    def tool_manager(self) -> Any:
        tm = self.source.tool_manager
        return tm if isinstance(tm, ToolManager) else _SeedTools(tm, self.runner)


def _run_of(runner: Any, run_id: str | None) -> Any:
    return runner._active.get(run_id) if run_id is not None else None


class _PlannerModel:
    """The seed planner, asked once per step, as the run's model."""

    native_tools = False
    provider = "seed-planner"

    def __init__(self, agent: SeedAgent) -> None:
        self.agent = agent
        self.name = type(agent.source.planner).__name__

    async def _ask(self, request: ModelRequest) -> Any:
        runner = self.agent.runner
        run = _run_of(runner, request.run_id)
        planner = self.agent.source.planner
        if planner is None:
            raise UserError("the agent has no planner")
        pk = dict(run.prompt_kwargs) if run is not None else {}
        if runner.conversation_memory is not None:
            pk.setdefault("chat_history_str", "")
        pk["step_history"] = run.step_history if run is not None else []
        pk["max_steps"] = run.max_steps if run is not None else self.agent.max_steps
        seed = run.config.seed_call if run is not None else SeedCall()
        kwargs = {"prompt_kwargs": pk, "model_kwargs": dict(request.model_kwargs),
                  "use_cache": seed.use_cache, "id": seed.id}
        sync = seed.face == "call"
        call, acall = getattr(planner, "call", None), getattr(planner, "acall", None)
        if (sync or acall is None) and callable(call):
            out = call(**kwargs)
        elif callable(acall):
            out = acall(**kwargs)
        else:
            raise UserError(f"the planner {type(planner).__name__} has neither call nor acall")
        if inspect.isawaitable(out):
            out = await out
        if not hasattr(out, "data"):
            raise ModelResponseError(f"Expected GeneratorOutput, but got {type(out)}")
        return out

    def _response(self, out: Any) -> ModelResponse:
        from ..models.adalflow_client import _usage

        raw = getattr(out, "raw_response", None)
        return ModelResponse(text=raw if isinstance(raw, str) else None, raw=out, model_name=self.name,
                             usage=_usage(getattr(out, "usage", None)), thinking=getattr(out, "thinking", None))

    async def request(self, request: ModelRequest) -> ModelResponse:
        return self._response(await self._ask(request))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        out = await self._ask(request)
        raw = getattr(out, "raw_response", None)
        if raw is not None and hasattr(raw, "__aiter__"):  # a streamed LLM reply: pass its events on
            async for event in raw:
                yield ModelDelta(text=event if isinstance(event, str) else None, raw=event)
        yield self._response(out)


class _PlannerSteps:
    """The driver's planner hooks: the seed planner keeps its own prompt, so messages stay empty."""

    training = False

    def __init__(self, agent: SeedAgent) -> None:
        self.agent = agent

    @staticmethod
    def mode(model: Any) -> str:
        return "json"

    @staticmethod
    def final_style(model: Any) -> str:
        return "seed"

    def initial_messages(self, mode: str, prompt_kwargs: dict[str, Any], final_style: str = "seed") -> list[Any]:
        return []

    def build_request(self, mode: str, messages: list[Any], model_kwargs: dict[str, Any], run_id: str,
                      step: int, final_style: str = "seed") -> ModelRequest:
        return ModelRequest(messages=messages, model_kwargs=model_kwargs, run_id=run_id, step=step)

    def parse_response(self, mode: str, resp: ModelResponse) -> GeneratorOutput[Any]:
        out = resp.raw
        data, raw = out.data, getattr(out, "raw_response", None)
        if data is None:
            error = getattr(out, "error", None) or "Error: the planner returned no action"
            return GeneratorOutput(data=None, error=error, raw_response=raw)
        items = data if isinstance(data, list) else [data]
        calls: list[Function] = []
        for item in items:
            fn = _as_function(item)
            if fn is None:
                return GeneratorOutput(data=None, raw_response=raw,
                                       error=f"Error: the planner's output is not a Function: {type(item).__name__}")
            calls.append(fn)
        thinking = getattr(out, "thinking", None)
        if thinking is not None and getattr(self.agent.source, "is_thinking_model", False):
            for fn in calls:
                fn.thought = thinking
        return GeneratorOutput(data=calls, raw_response=raw, thinking=thinking, usage=resp.usage)

    def add_step_messages(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_error_messages(self, *args: Any, **kwargs: Any) -> None:
        pass


def _as_function(item: Any) -> Function | None:
    if isinstance(item, Function):
        return item  # the planner's own object (a subclass too): step_history holds it as given
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        return None
    return Function(id=getattr(item, "id", None), thought=getattr(item, "thought", None), name=name,
                    args=list(getattr(item, "args", None) or []), kwargs=dict(getattr(item, "kwargs", None) or {}),
                    _is_answer_final=getattr(item, "_is_answer_final", None), _answer=getattr(item, "_answer", None))


class _ToolView:
    """What the driver asks of a tool (approval flag, arguments check) for a seed tool manager."""

    _ctx_params: list[str] = []
    max_retries = 0

    def __init__(self, name: str, require_approval: bool) -> None:
        self.name = name
        self.require_approval = require_approval

    def validate(self, args: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(kwargs)


class _SeedTools:
    """A seed-style tool manager (``execute_func`` / ``execute_func_async``) as the driver's."""

    _toolsets: dict[int, Any] = {}
    version = 0

    def __init__(self, tm: Any, runner: Any) -> None:
        self.tm = tm
        self.runner = runner

    def refresh(self) -> None:
        pass

    @property
    def tools(self) -> list[Any]:
        return list(getattr(self.tm, "tools", None) or ())

    def get(self, name: str) -> _ToolView:
        tool = None
        context_map = getattr(self.tm, "_context_map", None)
        if isinstance(context_map, dict):
            tool = context_map.get(name)
        return _ToolView(name, bool(getattr(tool, "require_approval", False)))

    async def execute(self, call: Function, make_ctx: Any = None, on_activity: Any = None) -> ToolResult:
        run = _run_of(self.runner, current_run_id.get())
        sync = run is not None and run.config.seed_call.face == "call"
        try:
            fo = await _execute(self.tm, call, sync)
            output = fo.output if isinstance(fo, FunctionOutput) or hasattr(fo, "output") else fo
            error = getattr(fo, "error", None)
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


async def _execute(tm: Any, func: Function, sync: bool) -> Any:
    if tm is None:
        raise UserError("the agent has no tool manager")
    sync_fn, async_fn = getattr(tm, "execute_func", None), getattr(tm, "execute_func_async", None)
    if callable(sync_fn) and (sync or not callable(async_fn)):
        result = sync_fn(func)
    elif callable(async_fn):
        result = async_fn(func)
    elif callable(tm):
        result = tm(func, "execute")
    else:
        raise UserError(f"the tool manager {type(tm).__name__} has no execute_func")
    if inspect.isawaitable(result):
        result = await result
    return result


# ------------------------------------------------------------------ seed-compatibility endings
def seed_result_sink(event: Any) -> None:
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

    agent: Any
    permission_manager: Any
    answer_data_type: Any

    @property
    def is_thinking_model(self) -> bool:
        return bool(getattr(self.agent, "is_thinking_model", False))

    @property
    def _current_task(self) -> Any:
        """The task of the most recent run started by ``astream`` (the seed's attribute)."""
        run = getattr(self, "_last_run", None)
        return run.cancellation.task if run is not None else None

    def _check_last_step(self, step: Any) -> bool:
        """True when ``step`` is the final answer (the seed's ``_is_answer_final`` flag)."""
        return bool(getattr(step, "_is_answer_final", False))

    def _get_final_answer(self, function: Any) -> Any:
        if hasattr(function, "_answer"):
            return self._process_data(function._answer)
        return None

    def _process_data(self, data: Any, id: str | None = None) -> Any:
        """Convert a final answer to the answer type (treadle's conversion; falsy answers are
        valid). For pydantic models and dataclasses a string must be a JSON object, as in the seed.
        Raises ValueError("Error processing output: …")."""
        import dataclasses

        from ..errors import AnswerConversionError
        from ..planner import convert_answer

        tp = self.answer_data_type or str
        try:
            if isinstance(data, str) and isinstance(tp, type) and (
                    dataclasses.is_dataclass(tp) or hasattr(tp, "model_validate")):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as e:
                    raise ValueError(f"Invalid JSON in data: {e}") from None
                if not isinstance(data, dict):
                    raise ValueError(f"Expected dict after JSON parsing, got {type(data)}")
            return convert_answer(data, tp)
        except (ValueError, AnswerConversionError) as e:
            raise ValueError(f"Error processing output: {e}") from None

    def _create_runner_result(self, answer: Any, step_history: list[Any], error: str | None = None) -> RunnerResult:
        return RunnerResult(answer=answer, step_history=list(step_history), error=error,
                            status="success" if error is None else "error")

    @staticmethod
    def _denied_output(func: Any) -> FunctionOutput:
        text = "Tool execution cancelled by user"
        return FunctionOutput(name=func.name, input=func, output=ToolOutput(
            output=text, observation=text, display="Permission denied", status="cancelled"))

    async def _tool_execute_async(self, func: Any, streaming_result: Any = None) -> FunctionOutput:
        """Approve (through the permission manager) and execute one call; a FunctionOutput."""
        pm = self.permission_manager
        if pm is not None:
            decision = await pm.check_permission(func)
            if not decision[0]:
                return self._denied_output(func)
            func = decision[1] or func
        if streaming_result is not None:
            streaming_result.put_nowait(RunItemStreamEvent(name="agent.tool_call_start",
                                                           item=ToolCallRunItem(data=func, id=func.id)))
        result = await _execute(self.agent.tool_manager, func, sync=False)
        if not isinstance(result, FunctionOutput):
            raise ValueError("Result is not a FunctionOutput")
        return result

    def _tool_execute_sync(self, func: Any) -> FunctionOutput:
        """``_tool_execute_async`` from synchronous code (execute_func is preferred)."""
        from .._sync import run_sync

        pm = self.permission_manager
        if pm is not None:
            decision = run_sync(pm.check_permission(func))
            if not decision[0]:
                return self._denied_output(func)
            func = decision[1] or func
        result = run_sync(_execute(self.agent.tool_manager, func, sync=True))
        if not isinstance(result, FunctionOutput):
            raise ValueError("Result is not a FunctionOutput")
        return result

    async def stream_tool_execution(self, function: Any, tool_call_id: str, tool_call_name: str,
                                    streaming_result: Any) -> tuple[Any, Any, Any]:
        """Execute one call, emitting start/activity/complete events into ``streaming_result``;
        returns (FunctionOutput, output, observation) as in the seed."""
        from ..events import ToolOutputRunItem

        result = await self._tool_execute_async(function, streaming_result)
        output = result.output

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
        observation = output.observation if isinstance(output, ToolOutput) else output
        return result, output, observation
