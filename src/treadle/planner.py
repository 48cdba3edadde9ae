"""The planner: renders the prompt, asks the model, turns its reply into Functions.

Two modes:

* ``json`` (the seed's): the system prompt lists the tools and asks for one JSON
  object per reply; the reply text is parsed (fenced or slightly broken JSON is
  repaired with json-repair). A JSON schema of every valid reply is also sent as
  ``ModelRequest.output_schema`` so clients that can constrain decoding do.
* ``native``: the agent's tools go to the model's own tool-calling API and the
  instructions go out as they are: nothing is added that a capable model does not need.
  A plain-text reply is the final answer. A structured answer type (a pydantic model, a
  dataclass, ``list[int]``…) uses the provider's structured output when the model has
  ``structured_output`` (``ModelRequest.answer_format``: the reply text is the answer's
  JSON), else one output tool whose parameters are the answer's schema. A ``finish`` call
  is still taken as the final answer (scripts and the seed-compatible prompt use it).
  The seed-compatible prompt (``treadle.compat.prompt``) brings back the ``finish`` tool
  and the protocol lines of the system prompt.

Steps are rendered as chat messages appended to one list per run (assistant action,
then the observation), so nothing is re-rendered per step and providers can reuse
their prompt cache.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from ._answers import (  # the pure parts, re-exported: treadle.planner is where callers found them
    TEXT_TYPES,
    answer_format_of,
    answer_schema,
    convert_answer,
    fn_json,
    normalise_call,
    parse_function,
    render_observation,
    unwrap_answer,
)
from ._tool_defs import tool_definitions
from .compat import seed_compat
from .errors import OutputParseError
from .models.base import AnswerFormat, ModelRequest, ModelResponse
from .protocols import AgentConfig
from .types import (
    EXAMPLES_KEY,
    FINISH_TOOL,
    OBSERVATION_PREFIX,
    Function,
    FunctionDefinition,
    GeneratorOutput,
    PlannerMode,
    to_jsonable,
)

# EXAMPLES_KEY, OBSERVATION_PREFIX and PlannerMode are defined in treadle.types (models read them too)
__all__ = ["EXAMPLES_KEY", "OBSERVATION_PREFIX", "Planner", "PlannerMode", "convert_answer", "parse_function",
           "render_observation"]

Message = dict[str, Any]

if TYPE_CHECKING:
    import jinja2


@runtime_checkable
class _StepLike(Protocol):
    """A step of the seed's ``step_history`` (a ``StepOutput``)."""

    function: object
    observation: object


DEFAULT_INSTRUCTIONS = "You are an excellent task planner. Answer the user's query, using the tools when they help."

JSON_SYSTEM_TEMPLATE = """\
{{ instructions }}
{% if tools %}
Tools you can call, one per step:
{% for t in tools %}{{ loop.index }}. {{ t.func_name }}{% if t.func_desc %}: {{ t.func_desc }}{% endif %}
   arguments (JSON schema): {{ t.func_parameters | tojson }}
{% endfor %}{% else %}
No tools are provided: answer directly.
{% endif %}
Reply with exactly one JSON object and nothing else (no markdown fences).
To call a tool:
{"thought": "<short reasoning>", "name": "<tool name>", "kwargs": {<arguments>}}
To give the final answer:
{% if final_style == "finish" %}{"thought": "<short reasoning>", "name": "finish", "kwargs": {"answer": <the answer>}}
{% else %}{"thought": "<short reasoning>", "_is_answer_final": true, "_answer": <the answer>}
{% endif %}
The final answer must match this JSON schema: {{ answer_schema | tojson }}
If an observation starts with "Error", fix the call and try again.
You have at most {{ max_steps }} steps; at the last step give the final answer.
{% if examples %}
Examples:
{{ examples }}
{% endif %}{% if context_str %}
<CONTEXT>
{{ context_str }}
</CONTEXT>
{% endif %}{% if chat_history_str %}
<CHAT_HISTORY>
{{ chat_history_str }}
</CHAT_HISTORY>
{% endif %}"""

# native mode: the instructions as they are, then only what the run itself supplies
NATIVE_SYSTEM_TEMPLATE = """\
{{ instructions }}{% if examples %}

Examples:
{{ examples }}{% endif %}{% if context_str %}

<CONTEXT>
{{ context_str }}
</CONTEXT>{% endif %}{% if chat_history_str %}

<CHAT_HISTORY>
{{ chat_history_str }}
</CHAT_HISTORY>{% endif %}"""

OUTPUT_TOOL = "final_answer"  # the output tool of a structured answer, for models without structured output
OUTPUT_TOOL_DESC = "Give the final answer."


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    import jinja2

    env = jinja2.Environment(autoescape=False, keep_trailing_newline=False)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return env.from_string(source)


# ------------------------------------------------------------------ parsing


# ------------------------------------------------------------------ answers


# ------------------------------------------------------------------ observations


# ------------------------------------------------------------------ planner
class Planner:
    """Builds model requests for an agent and parses the replies.

    It also answers the seed planner's protocol, one step per call:
    ``call``/``acall(prompt_kwargs=, model_kwargs=, use_cache=, id=) -> GeneratorOutput`` whose
    ``data`` is the chosen ``Function`` (``prompt_kwargs["step_history"]`` holds the steps so far).
    """

    training = False

    def __init__(self, agent: AgentConfig) -> None:
        self.agent = agent
        self._schema_cache: dict[str, dict[str, Any]] = {}
        self._native_cache: dict[tuple[bool, bool], list[FunctionDefinition]] = {}
        self._tools_version = -1
        self._system_cache: dict[tuple[object, ...], str] = {}
        self._format_cache: dict[object, AnswerFormat] = {}
        #: the seed-compatible native prompt (``treadle.compat.prompt``): the ``finish`` tool and the
        #: protocol lines. None: the process switch (``treadle.compat.seed_compat()``) decides.
        self.seed_prompt: bool | None = None
        self._run_memo: tuple[list[Message], bool, bool, AnswerFormat | None] | None = None

    @staticmethod
    def final_style(model: object) -> str:
        """How the JSON-mode final answer is spelled: the seed's ``_is_answer_final``
        ("seed", default) or a ``finish`` call ("finish", easier for small models)."""
        return getattr(model, "final_style", "seed")

    def _check_version(self) -> None:
        v = getattr(self.agent.tool_manager, "version", 0)
        if v != self._tools_version:
            self._tools_version = v
            self._schema_cache.clear()
            self._native_cache.clear()

    def definitions(self) -> list[FunctionDefinition]:
        """The tools' definitions (a seed-style tool manager: those of its ``_context_map``)."""
        return tool_definitions(self.agent.tool_manager)

    def mode(self, model: object) -> Literal["json", "native"]:
        m = self.agent.planner_mode
        if m == "auto":
            return "native" if getattr(model, "native_tools", False) else "json"
        return m

    # -------------------------------------------------------------- answers and prompt variants
    def uses_seed_prompt(self) -> bool:
        """The seed-compatible native prompt: this planner's ``seed_prompt``, else the process switch."""
        if self.seed_prompt is not None:
            return self.seed_prompt
        return seed_compat()

    def text_answer(self) -> bool:
        """Is the answer plain text (``str``, or no type)? Then a text reply is the answer as it is."""
        tp = self.agent.answer_data_type
        try:
            return tp in TEXT_TYPES
        except TypeError:  # an unhashable, uncomparable type object
            return False

    def structured(self, model: object = None, seed: bool | None = None) -> bool:
        """Native mode sends the answer's schema as the provider's structured output (instead
        of an output tool): a structured answer and a model with ``structured_output``."""
        model = self.agent.model if model is None else model
        if not getattr(model, "structured_output", False) or self.text_answer():
            return False
        return not (self.uses_seed_prompt() if seed is None else seed)

    def answer_format(self) -> AnswerFormat | None:
        """The answer's schema for the provider's structured output (None for a text answer).
        Compact (no titles), with an object root; cached, do not mutate."""
        tp = self.agent.answer_data_type
        if self.text_answer():
            return None
        try:
            cached = self._format_cache.get(tp)
        except TypeError:  # an unhashable type object
            return answer_format_of(tp)
        if cached is None:
            if len(self._format_cache) >= 16:
                self._format_cache.clear()
            cached = self._format_cache[tp] = answer_format_of(tp)
        return cached

    def output_tool(self) -> str:
        """The name of the output tool (structured answer, model without structured output)."""
        names = {d.func_name for d in self.definitions()}
        name = OUTPUT_TOOL
        while name in names:
            name += "_"
        return name

    # -------------------------------------------------------------- prompt
    def template_source(self, mode: str) -> str:
        if self.agent.template is not None:
            return self.agent.template
        if mode == "native":
            if self.uses_seed_prompt():
                from .compat.prompt import SEED_NATIVE_TEMPLATE

                return SEED_NATIVE_TEMPLATE
            return NATIVE_SYSTEM_TEMPLATE
        return JSON_SYSTEM_TEMPLATE

    def render_system(self, mode: str, prompt_kwargs: dict[str, Any], final_style: str = "seed") -> str:
        agent = self.agent
        # the lean native prompt adds nothing, not even default instructions
        lean = mode == "native" and agent.template is None and not self.uses_seed_prompt()
        default = "" if lean else DEFAULT_INSTRUCTIONS
        variables = {
            "final_style": final_style,
            "instructions": agent.instructions or default,
            "role_desc": agent.instructions or default,
            "tools": self.definitions() if mode == "json" else [],
            "answer_schema": answer_schema(agent.answer_data_type),
            "answer_type_schema": answer_schema(agent.answer_data_type),
            "max_steps": prompt_kwargs.get("max_steps", agent.max_steps),
            "examples": agent.examples,
        }
        variables.update(prompt_kwargs)
        return _compile(self.template_source(mode)).render(**variables)

    def initial_messages(self, mode: str, prompt_kwargs: dict[str, Any], final_style: str = "seed") -> list[Message]:
        system = self._system_cached(mode, prompt_kwargs, final_style)
        user = prompt_kwargs.get("input_str")
        if user is None:
            user = prompt_kwargs.get("input", "")
        if not system and mode == "native":  # no instructions: no system message (nothing is added)
            return [{"role": "user", "content": str(user)}]
        return [{"role": "system", "content": system}, {"role": "user", "content": str(user)}]

    def _system_cached(self, mode: str, prompt_kwargs: dict[str, Any], final_style: str) -> str:
        """The rendered system prompt, cached while nothing it depends on changes (runs
        differing only by their input share it)."""
        agent = self.agent
        try:
            key = (mode, final_style, getattr(agent.tool_manager, "version", 0), agent.instructions, agent.template,
                   agent.examples, agent.answer_data_type, self.uses_seed_prompt(),
                   tuple(sorted((k, v) for k, v in prompt_kwargs.items() if k not in ("input_str", "input"))))
            hash(key)
        except TypeError:  # an unhashable prompt variable: render every time
            return self.render_system(mode, prompt_kwargs, final_style)
        cached = self._system_cache.get(key)
        if cached is None:
            if len(self._system_cache) >= 256:
                self._system_cache.clear()
            cached = self._system_cache[key] = self.render_system(mode, prompt_kwargs, final_style)
        return cached

    def build_request(self, mode: str, messages: list[Message], model_kwargs: dict[str, Any], run_id: str,
                      step: int, final_style: str = "seed") -> ModelRequest:
        if mode == "native":
            memo = self._run_memo  # decided once per run (its message list): tools and prompt agree throughout
            if memo is None or memo[0] is not messages:
                seed = self.uses_seed_prompt()
                structured = self.structured(seed=seed)
                memo = self._run_memo = (messages, seed, structured, self.answer_format() if structured else None)
            return ModelRequest(messages=messages, tools=self._native_tools(memo[1], memo[2]),
                                model_kwargs=model_kwargs, run_id=run_id, step=step, answer_format=memo[3])
        return ModelRequest(messages=messages, output_schema=self.output_schema(final_style),
                            model_kwargs=model_kwargs, run_id=run_id, step=step)

    def native_tools(self) -> list[FunctionDefinition]:
        """Tool definitions for native mode (cached; do not mutate): the agent's tools, plus, for a
        structured answer and a model without structured output, one output tool whose parameters
        are the answer's schema. The seed-compatible prompt adds ``finish`` instead, as before."""
        seed = self.uses_seed_prompt()
        return self._native_tools(seed, self.structured(seed=seed))

    def _native_tools(self, seed: bool, structured: bool) -> list[FunctionDefinition]:
        self._check_version()
        key = (seed, structured)
        cached = self._native_cache.get(key)
        if cached is not None:
            return cached
        defs = list(self.definitions())
        if seed:
            schema = answer_schema(self.agent.answer_data_type)
            defs.append(FunctionDefinition(
                func_name=FINISH_TOOL, func_desc="Give the final answer to the user's query.",
                func_parameters={"type": "object", "properties": {"answer": schema}, "required": ["answer"],
                                 "additionalProperties": False}))
        elif not self.text_answer() and not key[1]:
            fmt = self.answer_format()
            assert fmt is not None
            defs.append(FunctionDefinition(func_name=self.output_tool(), func_desc=OUTPUT_TOOL_DESC,
                                           func_parameters=fmt.schema))
        self._native_cache[key] = defs
        return defs

    def output_schema(self, final_style: str = "seed") -> dict[str, Any]:
        """A JSON schema matching every valid reply: one branch per tool, plus the answer
        (cached per style; do not mutate)."""
        self._check_version()
        cached = self._schema_cache.get(final_style)
        if cached is not None:
            return cached
        branches: list[dict[str, Any]] = []
        for d in self.definitions():
            branch: dict[str, Any] = {"type": "object", "additionalProperties": False,
                                      "required": ["thought", "name", "kwargs"],
                                      "properties": {"thought": {"type": "string", "maxLength": 300},
                                                     "name": {"const": d.func_name},
                                                     "kwargs": d.func_parameters}}
            if d.func_desc:
                branch["description"] = d.func_desc
            if d.examples:
                branch[EXAMPLES_KEY] = d.examples
            branches.append(branch)
        answer = answer_schema(self.agent.answer_data_type)
        if final_style == "finish":
            branches.append({"type": "object", "additionalProperties": False,
                             "required": ["thought", "name", "kwargs"],
                             "properties": {"thought": {"type": "string", "maxLength": 300},
                                            "name": {"const": FINISH_TOOL},
                                            "kwargs": {"type": "object", "additionalProperties": False,
                                                       "required": ["answer"], "properties": {"answer": answer}}}})
        else:
            branches.append({"type": "object", "additionalProperties": False,
                             "required": ["thought", "_is_answer_final", "_answer"],
                             "properties": {"thought": {"type": "string", "maxLength": 300},
                                            "_is_answer_final": {"const": True}, "_answer": answer}})
        schema = self._schema_cache[final_style] = {"anyOf": branches}
        return schema

    # -------------------------------------------------------------- replies
    def parse_response(self, mode: str, resp: ModelResponse) -> GeneratorOutput[list[Function]]:
        """Turn a ModelResponse into a GeneratorOutput whose data is a list of Functions."""
        try:
            if resp.finish_reason in ("length", "max_tokens") and not resp.tool_calls:
                raise OutputParseError("your reply was cut off at the output token limit; reply shorter")
            if resp.tool_calls:
                calls = [normalise_call(fn) for fn in resp.tool_calls]
                if mode == "native" and not self.text_answer():
                    self._output_calls(calls)
            elif mode == "native":
                text = resp.text or ""
                if not text.strip():
                    raise OutputParseError("the reply was empty: call a tool, or give the answer")
                answer: object = text
                fmt = self.answer_format()
                if fmt is not None and fmt.wrapped:  # {"answer": ...} -> the answer
                    answer = unwrap_answer(text)
                calls = [Function(name=FINISH_TOOL, kwargs={"answer": answer}, _is_answer_final=True,
                                  _answer=answer)]
            else:
                calls = [parse_function(resp.text)]
        except OutputParseError as e:
            return GeneratorOutput(data=None, error=f"Error: could not parse your reply: {e}",
                                   raw_response=resp.text, thinking=resp.thinking, usage=resp.usage,
                                   api_response=resp.raw)
        if resp.thinking:
            for fn in calls:
                if not fn.thought:
                    fn.thought = resp.thinking
        return GeneratorOutput(data=calls, raw_response=resp.text, thinking=resp.thinking, usage=resp.usage,
                               api_response=resp.raw)

    def _output_calls(self, calls: list[Function]) -> None:
        """A call of the output tool is the final answer: its arguments (unwrapped)."""
        fmt = None
        name = None
        for fn in calls:
            if fn.name == FINISH_TOOL or not fn.name.startswith(OUTPUT_TOOL):
                continue
            if name is None:
                name = self.output_tool()
                fmt = self.answer_format()
            if fn.name != name or fmt is None:
                continue
            answer: object = fn.kwargs.get("answer") if fmt.wrapped else fn.kwargs
            fn._is_answer_final = True  # pyright: ignore[reportPrivateUsage]
            fn._answer = answer  # pyright: ignore[reportPrivateUsage]

    # -------------------------------------------------------------- the seed planner's protocol
    async def acall(self, prompt_kwargs: Mapping[str, object] | None = None,
                    model_kwargs: Mapping[str, object] | None = None, use_cache: bool | None = None,
                    id: str | None = None) -> GeneratorOutput[Function]:
        """One planner step: the next action for ``prompt_kwargs`` (model errors become ``error``)."""
        pk = dict(prompt_kwargs or {})
        history = pk.pop("step_history", None)
        listed: Iterable[object] = cast("Iterable[object]", history) if isinstance(history, (list, tuple)) else ()
        steps = [s for s in listed if isinstance(s, _StepLike)]
        model = self.agent.model
        mode, style = self.mode(model), self.final_style(model)
        messages = self.initial_messages(mode, pk, style)
        for s in steps:
            fn = s.function if isinstance(s.function, Function) else None
            obs = render_observation(s.observation, self.agent.max_observation_chars)
            if fn is None:
                self.add_error_messages(mode, messages, None, None, obs)
            else:
                self.add_step_messages(mode, messages, [fn], [obs])
        request = self.build_request(mode, messages, {**self.agent.model_kwargs, **(model_kwargs or {})},
                                     id or "", len(steps), style)
        try:
            resp = await model.request(request)
        except Exception as e:
            return GeneratorOutput(data=None, error=f"{type(e).__name__}: {e}", id=id)
        out = self.parse_response(mode, resp)
        return GeneratorOutput(data=out.data[0] if out.data else None, error=out.error, raw_response=out.raw_response,
                               thinking=out.thinking, usage=out.usage, id=id, api_response=out.api_response)

    def call(self, prompt_kwargs: Mapping[str, object] | None = None, model_kwargs: Mapping[str, object] | None = None,
             use_cache: bool | None = None, id: str | None = None) -> GeneratorOutput[Function]:
        from ._sync import run_sync

        return run_sync(self.acall(prompt_kwargs, model_kwargs, use_cache, id))

    __call__ = call

    def get_prompt(self, **prompt_kwargs: object) -> str:
        return self.agent.get_prompt(**prompt_kwargs)

    # -------------------------------------------------------------- step messages
    def add_step_messages(self, mode: str, messages: list[Message], calls: list[Function],
                          observations: list[str], failed: list[bool] | None = None) -> None:
        """Append one step: the action(s), then each observation (``failed`` marks errors,
        shown to the model as ``Observation: Error: …``)."""
        if failed:
            observations = [o if not bad or o.startswith("Error") else "Error: " + o
                            for o, bad in zip(observations, failed)]
        if mode == "native":
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": fn.id, "type": "function",
                 "function": {"name": fn.name, "arguments": json.dumps(to_jsonable(fn.kwargs))}}
                for fn in calls]})
            for fn, obs in zip(calls, observations):
                messages.append({"role": "tool", "tool_call_id": fn.id, "content": obs})
            return
        for fn, obs in zip(calls, observations):
            messages.append({"role": "assistant", "content": fn_json(fn)})
            messages.append({"role": "user", "content": OBSERVATION_PREFIX + obs})

    def add_error_messages(self, mode: str, messages: list[Message], raw: object, calls: list[Function] | None,
                           error: str) -> None:
        if calls and mode == "native":
            if len(calls) == 1 and calls[0].name == FINISH_TOOL and not self.uses_seed_prompt():
                # no ``finish`` tool is advertised: the answer was the reply's text, and goes back as text
                # (a tool call of an unknown tool would mislead the model; Anthropic refuses tool_use
                # blocks in a request without tools)
                answer = calls[0].final_answer
                text = answer if isinstance(answer, str) else json.dumps(to_jsonable(answer), ensure_ascii=False)
                messages.append({"role": "assistant", "content": text})
                messages.append({"role": "user", "content": error})
                return
            self.add_step_messages(mode, messages, calls, [error] * len(calls))
            return
        content = raw if isinstance(raw, str) and raw else (fn_json(calls[0]) if calls else "")
        messages.append({"role": "assistant", "content": content})
        messages.append({"role": "user", "content": error})


