"""AdalFlow's Agent, on treadle's: the seed's constructor arguments and behaviours.

``treadle.compat.Agent`` takes everything ``treadle.Agent`` takes plus the seed's arguments:
``model_client`` (a treadle model, or an AdalFlow-style ModelClient, wrapped in
``AdalFlowModel``), ``role_desc``, ``context_variables`` (kept on the tool manager),
``add_llm_as_fallback`` (adds the ``llm_tool`` tool), ``is_thinking_model`` (the model's
reasoning becomes each action's ``thought``; ``flip_thinking_model()`` toggles it),
``model_type``, ``cache_path`` and ``use_cache`` (kept, no response cache), ``tool_manager``
(a treadle or a seed-style one) and ``planner``: an object with the seed planner's
``call``/``acall(prompt_kwargs=, model_kwargs=, use_cache=, id=) -> GeneratorOutput`` that
replaces the model and prompt entirely. Like the seed's, it ignores keyword arguments it does
not know (the seed's Component took them).
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, TypeVar, runtime_checkable

from .._plugs import check_plug
from ..agent import Agent as _Agent
from ..errors import UserError
from ..models.adalflow_client import ConvertsInputs, ParsesCompletion
from ..planner import Planner, PlannerMode
from ..protocols import AdalFlowClient, ModelClient, SeedPlanner, SeedToolManager, check_model
from ..tools.manager import ToolManager

__all__ = ["LLM_TOOL", "Agent", "add_llm_fallback"]

T = TypeVar("T")
LLM_TOOL = "llm_tool"


class Agent(_Agent[T]):
    """``treadle.Agent`` with AdalFlow's constructor arguments (see the module docstring)."""

    def __init__(
        self,
        name: str = "agent",
        tools: Iterable[Any] | None = None,
        model: ModelClient | AdalFlowClient | str | None = None,
        max_steps: int | None = 10,
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
        if max_steps is None or int(max_steps) < 1:  # the seed's callers may pass None
            raise UserError("max_steps must be at least 1")
        chosen = model if model is not None else model_client
        check_model(chosen)  # an AdalFlow-style client is accepted here, a model string checked
        if planner is not None and not isinstance(planner, Planner):
            check_plug(planner, SeedPlanner, "planner", any_of=("call", "acall"))
        seed_manager = tool_manager is not None and not isinstance(tool_manager, ToolManager)
        manager = tool_manager if isinstance(tool_manager, ToolManager) else \
            ToolManager(tools or (), additional_context={"context_variables": context_variables})
        super().__init__(name, manager, None, int(max_steps), answer_data_type, instructions or role_desc,
                         template=template, planner_mode=planner_mode, model_kwargs=model_kwargs, examples=examples,
                         max_observation_chars=max_observation_chars, handoffs=(),
                         input_guardrails=input_guardrails, output_guardrails=output_guardrails,
                         tool_guardrails=tool_guardrails)
        if seed_manager:  # driven through treadle.compat.seed_runner
            self.tool_manager = tool_manager
        self._model = chosen
        if isinstance(chosen, str):
            from ..models import check_model_string

            check_model_string(chosen)
        self._model_client = chosen
        self.context_variables = context_variables
        self.add_llm_as_fallback = add_llm_as_fallback
        self.is_thinking_model = bool(is_thinking_model)
        self.model_type = model_type
        self.cache_path = cache_path
        self.use_cache = use_cache
        self.kwargs = kwargs
        if planner is not None:
            self.planner = planner
        for h in handoffs:
            self.add_handoff(h)
        if add_llm_as_fallback:
            add_llm_fallback(self)

    @property
    def model(self) -> ModelClient:
        """The ModelClient: a model string resolved, an AdalFlow-style client wrapped in ``AdalFlowModel``."""
        m = self._model
        if m is not None and not isinstance(m, str) and (not hasattr(m, "request") or _seed_client(m)):
            from ..models.adalflow_client import AdalFlowModel

            m = self._model = AdalFlowModel(m, **({"model_type": self.model_type} if self.model_type else {}))
        return _Agent.model.fget(self)  # type: ignore[attr-defined]

    @model.setter
    def model(self, value: ModelClient | AdalFlowClient | str | None) -> None:
        check_model(value)
        self._model = self._model_client = value

    @property
    def model_client(self) -> Any:
        """The client as given (an AdalFlow-style client is not the wrapped ``model``)."""
        c = self._model_client
        if c is not None and not isinstance(c, str) and (not hasattr(c, "request") or _seed_client(c)):
            return c
        return self.model

    @property
    def role_desc(self) -> str | None:
        return self.instructions

    def flip_thinking_model(self) -> None:
        """Toggle ``is_thinking_model`` and rebuild the planner (a custom planner is kept)."""
        self.is_thinking_model = not self.is_thinking_model
        if isinstance(self.planner, Planner):
            self.planner = Planner(self)

    def is_training(self) -> bool:
        planner: object = self.planner
        return isinstance(planner, _Trains) and bool(planner.training)

    def driven_by(self, runner: Any) -> Any:
        from .seed_runner import driven_agent

        return driven_agent(runner)

    def get_prompt(self, **prompt_kwargs: Any) -> str:
        if not isinstance(self.planner, Planner):
            return self.planner.get_prompt(**prompt_kwargs)
        return super().get_prompt(**prompt_kwargs)


@runtime_checkable
class _Trains(Protocol):
    @property
    def training(self) -> object: ...


def _seed_client(m: object) -> bool:
    """An AdalFlow-style client (convert_inputs_to_api_kwargs / parse_chat_completion)."""
    return isinstance(m, (ConvertsInputs, ParsesCompletion))


def add_llm_fallback(agent: Any) -> None:
    """Add ``llm_tool(input_str) -> str``: the agent's own model answers a sub-question
    directly (no tools, no JSON), for queries no other tool covers."""
    if agent._model is None:
        raise UserError("add_llm_as_fallback needs a model: pass model_client=... (or model=...)")
    from ..models.base import ModelRequest
    from ..tools.function_tool import FunctionTool

    async def llm_tool(input_str: str) -> str:
        """Answer a question directly with the language model, when no other tool fits.

        Args:
            input_str: the question or instruction for the model.
        """
        request = ModelRequest(messages=[{"role": "user", "content": input_str}],
                               model_kwargs=dict(agent.model_kwargs))
        response = await agent.model.request(request)
        return response.text or ""

    agent.tool_manager.add(FunctionTool(llm_tool, name=LLM_TOOL))
