"""Agent: a planner model, tools, a step budget and an answer type. Stateless per run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from ._plugs import describe
from ._strict import strict
from .compaction import Compaction
from .errors import PlugError, UserError
from .models.adalflow_client import is_adalflow_client
from .planner import Planner, PlannerMode
from .protocols import ModelClient, check_model

if TYPE_CHECKING:
    from .handoffs import Handoff
    from .nesting import AgentTool
    from .protocols import HandoffTarget
from .tools.manager import ToolManager

__all__ = ["Agent"]

T = TypeVar("T")

_COMPAT_HINT = " (AdalFlow's Agent arguments — model_client, role_desc, planner… — are taken by treadle.compat.Agent)"


class Agent(Generic[T]):
    """What to run: the model, the tools, how many steps, which answer type.

    An Agent holds no per-run state, so one Agent serves any number of concurrent runs. An
    argument it does not take raises ``UnknownArgumentError`` naming the closest one.

    Args:
        name: a label (traces, the journal, the UI).
        tools: callables, ``FunctionTool``s and toolsets (an MCP server), or a ``ToolManager``.
        model: a ``ModelClient`` (e.g. ``ScriptedModel``, ``OpenAIModel``) or a model string
            (``"openai:gpt-4o-mini"``, ``"local"``…: ``treadle models`` lists them), checked now
            and resolved at the first step.
        max_steps: planner calls allowed per run (tool steps and recoverable errors).
        answer_data_type: the type of ``RunnerResult.answer`` (str, int, a pydantic
            model, a dataclass, ``list[int]``, …).
        instructions: the system instructions.
        template: a jinja2 template replacing the default system prompt.
        planner_mode: ``"auto"`` (native tool calling when the model supports it),
            ``"json"`` or ``"native"``.
        model_kwargs: default model parameters (temperature, max_tokens, …).
        examples: worked examples for the prompt.
        max_observation_chars: observations longer than this are truncated for the model.
        handoffs: agents (or ``handoff(agent, ...)``) this one may hand the conversation to;
            the model sees a ``transfer_to_<name>`` tool for each (docs/multi-agent.md).
        input_guardrails, output_guardrails, tool_guardrails: checks on the run's input, on
            the final answer, and on each tool call's arguments or output: functions or
            agents, or ``InputGuardrail``/``OutputGuardrail``/``ToolGuardrail`` (docs/guardrails.md).
        context: context compaction: ``"auto"`` (default: on for the embedded model, and for any
            model whenever a request would not fit), a ``Compaction(...)``, or None (off)
            (docs/compaction.md).

    AdalFlow's constructor arguments (``model_client``, ``role_desc``, ``planner``, …) are taken
    by ``treadle.compat.Agent`` (docs/porting-from-adalflow.md).
    """

    @strict(_COMPAT_HINT)
    def __init__(
        self,
        name: str = "agent",
        tools: Iterable[object] | ToolManager | None = None,
        model: ModelClient | str | None = None,
        max_steps: int = 10,
        answer_data_type: object = str,
        instructions: str | None = None,
        *,
        template: str | None = None,
        planner_mode: PlannerMode = "auto",
        model_kwargs: Mapping[str, object] | None = None,
        examples: str | None = None,
        max_observation_chars: int = 20_000,
        handoffs: Iterable[HandoffTarget | Handoff] = (),
        input_guardrails: Iterable[object] = (),
        output_guardrails: Iterable[object] = (),
        tool_guardrails: Iterable[object] = (),
        context: Compaction | Literal["auto"] | None = "auto",
    ) -> None:
        if not isinstance(cast(object, name), str):
            raise UserError(f"name must be a string, not {type(name).__name__} (Agent(name, tools, model, ...))")
        if isinstance(max_steps, bool) or not isinstance(cast(object, max_steps), int) or max_steps < 1:
            raise UserError(f"max_steps must be an integer of at least 1, not {max_steps!r}")
        if planner_mode not in ("auto", "json", "native"):
            raise UserError(f"planner_mode must be auto, json or native, not {planner_mode!r}")
        if context is not None and context != "auto" and not isinstance(cast(object, context), Compaction):
            raise UserError(f"context must be 'auto', a Compaction(...) or None, not {context!r}")
        self.name = name
        self.context: object = context  # or the journaled compactions of a replay (treadle._context)
        self._check_model(model)  # every plug point is checked now (a PlugError naming what is missing)
        # Any: treadle.compat.Agent puts a seed's tool manager, planner or client here
        self.tool_manager: Any = tools if isinstance(tools, ToolManager) else ToolManager(tools or ())
        self._model: Any = model
        self.max_steps = max_steps
        self.answer_data_type = answer_data_type if answer_data_type is not None else str
        self.instructions = instructions
        self.template = template
        self.planner_mode: PlannerMode = planner_mode
        self.model_kwargs: dict[str, object] = dict(model_kwargs or {})
        self.examples = examples
        self.max_observation_chars = max_observation_chars
        self.planner: Any = Planner(self)
        from ._guardrail_types import InputGuardrail, OutputGuardrail, ToolGuardrail, as_guardrails

        self.input_guardrails: list[InputGuardrail] = as_guardrails(input_guardrails, InputGuardrail)
        self.output_guardrails: list[OutputGuardrail] = as_guardrails(output_guardrails, OutputGuardrail)
        self.tool_guardrails: list[ToolGuardrail] = as_guardrails(tool_guardrails, ToolGuardrail)
        self.handoffs: list[Handoff] = []
        for h in handoffs:
            self.add_handoff(h)

    @staticmethod
    def _check_model(model: object) -> None:
        if isinstance(model, str):
            from .models import check_model_string

            check_model_string(model)
            return
        if model is not None and (is_adalflow_client(model) or not callable(getattr(model, "request", None))):
            if any(callable(getattr(model, m, None)) for m in ("call", "acall")):
                raise PlugError(f"model {describe(model)} is an AdalFlow-style client (call/acall): treadle.Agent"
                                " takes a treadle ModelClient; use treadle.compat.Agent(model_client=...), wrapping it")
        check_model(model)

    def add_handoff(self, target: HandoffTarget | Handoff) -> Handoff:
        """Let this agent hand the conversation to ``target`` (an Agent, or ``handoff(agent, ...)``);
        returns the Handoff. For agents that hand back and forth, add one side after both exist."""
        from .handoffs import as_handoff

        h = as_handoff(target)
        self.tool_manager.add(h.tool())
        self.handoffs.append(h)
        return h

    def as_tool(self, name: str | None = None, description: str | None = None, *, input_type: object = None,
                require_approval: bool = False) -> AgentTool:
        """This agent as a tool of another agent: the model calls it with ``input`` (a string,
        or an ``input_type`` value), the observation is this agent's typed answer. The call
        is a child run: streamed, journaled, approvable and cancellable with its caller
        (docs/multi-agent.md)."""
        from .nesting import AgentTool

        return AgentTool(self, name=name, description=description, input_type=input_type,
                         require_approval=require_approval)

    @property
    def model(self) -> ModelClient:
        """The ModelClient, resolved from a model string on first use."""
        m = self._model
        if m is None:
            raise UserError(f"agent {self.name!r} has no model; pass model=... (e.g. ScriptedModel([...]))")
        if isinstance(m, str):
            from .models import resolve_model

            m = self._model = resolve_model(m)
        return m

    @property
    def model_spec(self) -> ModelClient | str | None:
        """The model as given (a model string stays one until ``model`` resolves it)."""
        spec: ModelClient | str | None = self._model
        return spec

    @model.setter
    def model(self, value: ModelClient | str | None) -> None:
        self._check_model(value)
        self._model = value

    @property
    def tools(self) -> list[Any]:  # FunctionTools; a seed tool manager's own (treadle.compat)
        return list(getattr(self.tool_manager, "tools", ()))

    def driven_by(self, runner: object) -> Agent[T]:
        """What ``runner`` drives: the agent itself (``treadle.compat.Agent`` may return an adapter)."""
        return self

    def get_prompt(self, **prompt_kwargs: object) -> str:
        """The rendered system prompt (for inspection)."""
        model = self._model if not isinstance(self._model, str) else None
        kwargs = {"max_steps": self.max_steps, **prompt_kwargs}
        return self.planner.render_system(self.planner.mode(model), kwargs, self.planner.final_style(model))

    def __repr__(self) -> str:
        names = getattr(self.tool_manager, "names", None)
        return f"Agent(name={self.name!r}, tools={names}, max_steps={self.max_steps})"
