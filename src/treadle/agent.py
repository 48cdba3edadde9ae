"""Agent: a planner model, tools, a step budget and an answer type. Stateless per run."""

from __future__ import annotations

from typing import Any, Generic, Iterable, TypeVar, cast

from ._plugs import check_plug
from .errors import UserError
from .planner import Planner, PlannerMode
from .protocols import AdalFlowClient, ModelClient, SeedPlanner, SeedToolManager, check_model
from .tools.manager import ToolManager

__all__ = ["Agent"]

T = TypeVar("T")


class Agent(Generic[T]):
    """What to run: the model, the tools, how many steps, which answer type.

    An Agent holds no per-run state, so one Agent serves any number of concurrent runs.

    Args:
        name: a label (traces, the journal, the UI).
        tools: callables or ``FunctionTool``s.
        model: a ``ModelClient`` (e.g. ``ScriptedModel``, ``OpenAIModel``) or a model
            string resolved by ``treadle.models.resolve_model``.
        max_steps: planner calls allowed per run (tool steps and recoverable errors).
        answer_data_type: the type of ``RunnerResult.answer`` (str, int, a pydantic
            model, a dataclass, ``list[int]``, …).
        instructions: the system instructions (the seed's ``role_desc``).
        template: a jinja2 template replacing the default system prompt.
        planner_mode: ``"auto"`` (native tool calling when the model supports it),
            ``"json"`` or ``"native"``.
        model_kwargs: default model parameters (temperature, max_tokens, …).
        max_observation_chars: observations longer than this are truncated for the model.
        handoffs: agents (or ``handoff(agent, ...)``) this one may hand the conversation to;
            the model sees a ``transfer_to_<name>`` tool for each (docs/multi-agent.md).
        input_guardrails, output_guardrails, tool_guardrails: checks on the run's input, on
            the final answer, and on each tool call's arguments or output: functions or
            agents, or ``InputGuardrail``/``OutputGuardrail``/``ToolGuardrail`` (docs/guardrails.md).

    The seed's constructor arguments are accepted by keyword too (see docs/porting-from-adalflow.md):
    ``model_client`` (a treadle model, or an AdalFlow-style ModelClient, wrapped in
    ``AdalFlowModel``), ``role_desc``, ``context_variables`` (kept on the tool manager),
    ``add_llm_as_fallback`` (adds the ``llm_tool`` tool), ``is_thinking_model`` (the model's
    reasoning becomes each action's ``thought``; ``flip_thinking_model()`` toggles it),
    ``model_type``, ``cache_path`` and ``use_cache`` (kept, no response cache), and ``planner``:
    an object with the seed planner's ``call``/``acall(prompt_kwargs=, model_kwargs=, use_cache=,
    id=) -> GeneratorOutput`` that replaces the model and prompt entirely.
    """

    def __init__(
        self,
        name: str = "agent",
        tools: Iterable[Any] | None = None,
        model: ModelClient | AdalFlowClient | str | None = None,
        max_steps: int = 10,
        answer_data_type: Any = str,
        instructions: str | None = None,
        *,
        template: str | None = None,
        planner_mode: PlannerMode = "auto",
        model_kwargs: dict[str, Any] | None = None,
        examples: str | None = None,
        max_observation_chars: int = 20_000,
        tool_manager: ToolManager | SeedToolManager | None = None,
        role_desc: str | None = None,
        model_client: ModelClient | AdalFlowClient | str | None = None,
        context_variables: dict[str, Any] | None = None,
        add_llm_as_fallback: bool = False,
        is_thinking_model: bool = False,
        model_type: Any = None,
        cache_path: str | None = None,
        use_cache: bool = True,
        planner: SeedPlanner | None = None,
        handoffs: Iterable[Any] = (),
        input_guardrails: Iterable[Any] = (),
        output_guardrails: Iterable[Any] = (),
        tool_guardrails: Iterable[Any] = (),
        **kwargs: Any,
    ) -> None:
        if cast(object, max_steps) is None or int(max_steps) < 1:  # the seed's callers may pass None
            raise UserError("max_steps must be at least 1")
        if planner_mode not in ("auto", "json", "native"):
            raise UserError(f"planner_mode must be auto, json or native, not {planner_mode!r}")
        self.name = name
        # every plug point is checked now (PlugError naming what is missing), not at the first step
        check_model(model if model is not None else model_client)
        if planner is not None and not isinstance(planner, Planner):
            check_plug(planner, SeedPlanner, "planner", any_of=("call", "acall"))
        if tool_manager is None:
            tool_manager = ToolManager(tools or (), additional_context={"context_variables": context_variables})
        # a treadle ToolManager, or a seed-style one (driven through treadle.compat.seed_runner)
        self.tool_manager: Any = tool_manager
        self._model: Any = model if model is not None else model_client
        self._model_client = self._model
        self.context_variables = context_variables
        self.add_llm_as_fallback = add_llm_as_fallback
        self.is_thinking_model = bool(is_thinking_model)
        self.model_type = model_type
        self.cache_path = cache_path
        self.use_cache = use_cache
        self.kwargs = kwargs
        self.max_steps = int(max_steps)
        self.answer_data_type = answer_data_type if answer_data_type is not None else str
        self.instructions = instructions or role_desc
        self.template = template
        self.planner_mode: PlannerMode = planner_mode
        self.model_kwargs = dict(model_kwargs or {})
        self.examples = examples
        self.max_observation_chars = max_observation_chars
        self.planner: Any = planner if planner is not None else Planner(self)
        from .guardrails import InputGuardrail, OutputGuardrail, ToolGuardrail, as_guardrails

        self.input_guardrails: list[InputGuardrail] = as_guardrails(input_guardrails, InputGuardrail)
        self.output_guardrails: list[OutputGuardrail] = as_guardrails(output_guardrails, OutputGuardrail)
        self.tool_guardrails: list[ToolGuardrail] = as_guardrails(tool_guardrails, ToolGuardrail)
        self.handoffs: list[Any] = []
        for h in handoffs:
            self.add_handoff(h)
        if add_llm_as_fallback:
            from .compat.agent import add_llm_fallback

            add_llm_fallback(self)

    def add_handoff(self, target: Any) -> Any:
        """Let this agent hand the conversation to ``target`` (an Agent, or ``handoff(agent, ...)``);
        returns the Handoff. For agents that hand back and forth, add one side after both exist."""
        from .handoffs import as_handoff

        h = as_handoff(target)
        self.tool_manager.add(h.tool())
        self.handoffs.append(h)
        return h

    def as_tool(self, name: str | None = None, description: str | None = None, *, input_type: Any = None,
                require_approval: bool = False) -> Any:
        """This agent as a tool of another agent: the model calls it with ``input`` (a string,
        or an ``input_type`` value), the observation is this agent's typed answer. The call
        is a child run: streamed, journaled, approvable and cancellable with its caller
        (docs/multi-agent.md)."""
        from .nesting import AgentTool

        return AgentTool(self, name=name, description=description, input_type=input_type,
                         require_approval=require_approval)

    @property
    def model(self) -> ModelClient:
        """The ModelClient, resolved from a model string on first use (an AdalFlow-style
        client: wrapped in ``AdalFlowModel``)."""
        m = self._model
        if m is None:
            raise UserError(f"agent {self.name!r} has no model; pass model=... (e.g. ScriptedModel([...]))")
        if isinstance(m, str):
            from .models import resolve_model

            m = self._model = resolve_model(m)
        elif not hasattr(m, "request") or _seed_client(m):
            from .models.adalflow_client import AdalFlowModel

            m = self._model = AdalFlowModel(m, **({"model_type": self.model_type} if self.model_type else {}))
        return m

    @model.setter
    def model(self, value: ModelClient | AdalFlowClient | str | None) -> None:
        check_model(value)
        self._model = self._model_client = value

    # seed compatibility
    @property
    def model_client(self) -> Any:
        """The client as given (an AdalFlow-style client is not the wrapped ``model``)."""
        c = self._model_client
        if c is not None and not isinstance(c, str) and (not hasattr(c, "request") or _seed_client(c)):
            return c
        return self.model

    def flip_thinking_model(self) -> None:
        """Toggle ``is_thinking_model`` and rebuild the planner (a custom planner is kept)."""
        self.is_thinking_model = not self.is_thinking_model
        if isinstance(self.planner, Planner):
            self.planner = Planner(self)

    def is_training(self) -> bool:
        return bool(getattr(self.planner, "training", False))

    @property
    def tools(self) -> list[Any]:
        return list(getattr(self.tool_manager, "tools", ()))

    @property
    def role_desc(self) -> str | None:
        return self.instructions

    def get_prompt(self, **prompt_kwargs: Any) -> str:
        """The rendered system prompt (for inspection)."""
        if not isinstance(self.planner, Planner):
            return self.planner.get_prompt(**prompt_kwargs)
        model = self._model if not isinstance(self._model, str) else None
        kwargs = {"max_steps": self.max_steps, **prompt_kwargs}
        return self.planner.render_system(self.planner.mode(model), kwargs, self.planner.final_style(model))

    def __repr__(self) -> str:
        names = getattr(self.tool_manager, "names", None)
        return f"Agent(name={self.name!r}, tools={names}, max_steps={self.max_steps})"


def _seed_client(m: Any) -> bool:
    """An AdalFlow-style client (convert_inputs_to_api_kwargs / parse_chat_completion)."""
    return callable(getattr(m, "convert_inputs_to_api_kwargs", None)) or \
        callable(getattr(m, "parse_chat_completion", None))
