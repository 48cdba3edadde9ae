"""Agent: a planner model, tools, a step budget and an answer type. Stateless per run."""

from __future__ import annotations

from typing import Any, Generic, Iterable, TypeVar

from .errors import UserError
from .planner import Planner, PlannerMode
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
    """

    def __init__(
        self,
        name: str = "agent",
        tools: Iterable[Any] | None = None,
        model: Any = None,
        max_steps: int = 10,
        answer_data_type: Any = str,
        instructions: str | None = None,
        *,
        template: str | None = None,
        planner_mode: PlannerMode = "auto",
        model_kwargs: dict[str, Any] | None = None,
        examples: str | None = None,
        max_observation_chars: int = 20_000,
        tool_manager: ToolManager | None = None,
        role_desc: str | None = None,
        model_client: Any = None,
    ) -> None:
        if max_steps is None or int(max_steps) < 1:
            raise UserError("max_steps must be at least 1")
        if planner_mode not in ("auto", "json", "native"):
            raise UserError(f"planner_mode must be auto, json or native, not {planner_mode!r}")
        self.name = name
        self.tool_manager = tool_manager if tool_manager is not None else ToolManager(tools or ())
        self._model = model if model is not None else model_client
        self.max_steps = int(max_steps)
        self.answer_data_type = answer_data_type if answer_data_type is not None else str
        self.instructions = instructions or role_desc
        self.template = template
        self.planner_mode: PlannerMode = planner_mode
        self.model_kwargs = dict(model_kwargs or {})
        self.examples = examples
        self.max_observation_chars = max_observation_chars
        self.planner = Planner(self)

    @property
    def model(self) -> Any:
        """The ModelClient, resolved from a model string on first use."""
        m = self._model
        if m is None:
            raise UserError(f"agent {self.name!r} has no model; pass model=... (e.g. ScriptedModel([...]))")
        if isinstance(m, str):
            from .models import resolve_model

            m = self._model = resolve_model(m)
        return m

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    # seed compatibility
    @property
    def model_client(self) -> Any:
        return self.model

    @property
    def tools(self) -> list[Any]:
        return self.tool_manager.tools

    @property
    def role_desc(self) -> str | None:
        return self.instructions

    def get_prompt(self, **prompt_kwargs: Any) -> str:
        """The rendered system prompt (for inspection)."""
        model = self._model if not isinstance(self._model, str) else None
        kwargs = {"max_steps": self.max_steps, **prompt_kwargs}
        return self.planner.render_system(self.planner.mode(model), kwargs, self.planner.final_style(model))

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, tools={self.tool_manager.names}, max_steps={self.max_steps})"
