"""Tokens treadle adds to every model request, per answer type and provider mode (issue #28).

The task of ../shared/bench-http (one ``add(a, b)`` tool, the same instructions, 5 tool calls
then the final answer) runs through the real OpenAI and Anthropic SDKs against an in-process
fake endpoint (``httpx2.MockTransport``) that records every request body. Beside each run, the
bodies a hand-written loop would send for the same conversation (RAW: the instructions as the
system prompt, the prompt, the hand-written ``add`` schema, the same tool calls and results) are
built, and each request's tokens are compared with RAW's matching request.

Answer types: ``str``, a pydantic model (``Total``), ``list[int]``. Modes:

* ``openai``: OpenAIModel for api.openai.com (native tools; a structured answer as ``response_format``);
* ``openai-tool``: an OpenAI-compatible server without structured output (one output tool);
* ``openai-json``: the JSON planner protocol with ``json_schema_mode`` (what small local models need;
  not lean by design, shown for reference);
* ``anthropic``: AnthropicModel (a structured answer as ``output_config.format``);
* ``anthropic-tool``: AnthropicModel(structured_output=False) (one output tool).

Tokens ("≈prompt", as ../shared/bench-http/report.py counts them): each message's text, tool-call
names and arguments (tool_use inputs, tool_result contents), + 4 per message, + the tools array,
the response format's name and schema (not its API envelope) and the system text, + 3. The counter
is tiktoken's cl100k_base when it is installed with its encoding file, else (and always in the
tests, so they are deterministic) an approximation: one token per word (``\\w+``) and per
punctuation character — it over-counts JSON punctuation, so its figures are higher than cl100k's.

    python bench/bench_request_weight.py            # the table
    python bench/bench_request_weight.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field

INSTRUCTIONS = ("You are a careful calculator. Use the add tool for every addition, one call per turn, "
                "and never do arithmetic yourself.")
PROMPT = "Start from 0 and add 1, 2, 3, 4 and 5 in turn, one add call at a time. Then say 'the answer is N'."
K = 5  # tool calls per run


def add(a: int, b: int) -> int:
    """Add two integers and return their sum.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


class Total(BaseModel):
    """The result of the additions."""

    value: int = Field(description="The final sum.")
    steps: int = Field(description="How many additions were made.")


RAW_PARAMS = {"type": "object",
              "properties": {"a": {"type": "integer", "description": "The first addend."},
                             "b": {"type": "integer", "description": "The second addend."}},
              "required": ["a", "b"]}
RAW_TOOLS_OPENAI = [{"type": "function", "function": {"name": "add", "description": "Add two integers and return "
                                                      "their sum.", "parameters": RAW_PARAMS}}]
RAW_TOOLS_ANTHROPIC = [{"name": "add", "description": "Add two integers and return their sum.",
                        "input_schema": RAW_PARAMS}]

ANSWERS: dict[str, tuple[Any, Any]] = {  # name -> (answer type, the answer's JSON value)
    "str": (str, "the answer is 15"),
    "Total": (Total, {"value": 15, "steps": 5}),
    "list[int]": (list[int], [1, 3, 6, 10, 15]),
}
MODES = ("openai", "openai-tool", "openai-json", "anthropic", "anthropic-tool")


# ------------------------------------------------------------------ counting
def _tiktoken() -> Callable[[str], int] | None:
    try:
        import tiktoken

        enc = tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None
    return lambda text: len(enc.encode(text, disallowed_special=()))


_WORDS = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one token per word and per punctuation character."""
    return len(_WORDS.findall(text))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(content: Any, count: Callable[[str], int]) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count(content)
    n = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            n += count(block.get("text") or "")
        elif kind == "tool_use":
            n += count(block.get("name") or "") + count(_compact(block.get("input")))
        elif kind == "tool_result":
            n += _text(block.get("content"), count)
    return n


def prompt_tokens(body: dict[str, Any], count: Callable[[str], int] = approx_tokens) -> int:
    """What the model reads, approximately (OpenAI or Anthropic body)."""
    n = 3
    system = body.get("system")
    if system:
        n += 4 + _text(system, count)
    for m in body.get("messages") or []:
        n += 4 + _text(m.get("content"), count)
        for tc in m.get("tool_calls") or []:
            f = tc.get("function") or {}
            n += count(f.get("name", "")) + count(f.get("arguments", ""))
    if body.get("tools"):
        n += count(_compact(body["tools"]))
    spec = (body.get("response_format") or {}).get("json_schema")  # its name and schema (the envelope is API)
    if spec:
        n += count(spec.get("name") or "") + count(_compact(spec.get("schema")))
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        n += count(_compact(fmt.get("schema")))
    return n


# ------------------------------------------------------------------ the fake endpoints
def _t(n: int) -> int:
    return n * (n + 1) // 2


def _args(n: int) -> str:
    return json.dumps({"a": _t(n), "b": n + 1})


def _answer_args(schema: dict[str, Any], answer: Any) -> Any:
    props = schema.get("properties") or {}
    return {"answer": answer} if list(props) == ["answer"] else answer


@dataclass
class Endpoint:
    """Scripted like ../shared/bench-http/fake_openai.py: n tool results so far -> add(T(n), n+1),
    after the 5th the final answer (as text, as the output tool's call, or as a JSON step)."""

    provider: str
    answer: Any
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw_bytes: list[bytes] = field(default_factory=list)

    def __call__(self, request: Any) -> Any:
        import httpx2

        self.raw_bytes.append(bytes(request.content))
        body = json.loads(request.content)
        self.bodies.append(body)
        reply = self.anthropic(body) if self.provider == "anthropic" else self.openai(body)
        return httpx2.Response(200, json=reply)

    # openai
    def openai(self, body: dict[str, Any]) -> dict[str, Any]:
        msgs = body["messages"]
        json_mode = not body.get("tools") and "response_format" in body and \
            body["response_format"]["json_schema"]["name"] == "step"
        n = sum(1 for m in msgs if m["role"] == "tool" or (
            json_mode and m["role"] == "user" and str(m["content"]).startswith("Observation:")))
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if n < K:
            if json_mode:
                message["content"] = json.dumps({"thought": "add", "name": "add", "kwargs": json.loads(_args(n))})
            else:
                message["tool_calls"] = [{"id": f"call_{n}", "type": "function",
                                          "function": {"name": "add", "arguments": _args(n)}}]
        elif json_mode:
            message["content"] = json.dumps({"thought": "done", "_is_answer_final": True, "_answer": self.answer})
        elif "response_format" in body:
            schema = body["response_format"]["json_schema"]["schema"]
            message["content"] = json.dumps(_answer_args(schema, self.answer))
        else:
            out = [t["function"] for t in body.get("tools") or [] if t["function"]["name"] != "add"]
            if out and not isinstance(self.answer, str):
                message["tool_calls"] = [{"id": "call_out", "type": "function", "function": {
                    "name": out[0]["name"], "arguments": json.dumps(_answer_args(out[0]["parameters"], self.answer))}}]
            else:
                message["content"] = self.answer
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    # anthropic
    def anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        n = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                for b in m["content"] if b.get("type") == "tool_result")
        fmt = (body.get("output_config") or {}).get("format")
        if n < K:
            content: list[dict[str, Any]] = [{"type": "tool_use", "id": f"toolu_{n}", "name": "add",
                                              "input": json.loads(_args(n))}]
        elif fmt:
            content = [{"type": "text", "text": json.dumps(_answer_args(fmt["schema"], self.answer))}]
        else:
            out = [t for t in body.get("tools") or [] if t["name"] != "add"]
            if out and not isinstance(self.answer, str):
                content = [{"type": "tool_use", "id": "toolu_out", "name": out[0]["name"],
                            "input": _answer_args(out[0]["input_schema"], self.answer)}]
            else:
                content = [{"type": "text", "text": self.answer}]
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": content,
                "stop_reason": "tool_use" if content[0]["type"] == "tool_use" else "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}


# ------------------------------------------------------------------ RAW: the hand-written loop's bodies
def raw_bodies(provider: str) -> list[dict[str, Any]]:
    out = []
    for i in range(K + 1):
        if provider == "anthropic":
            msgs: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
            for n in range(i):
                msgs.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{n}", "name": "add",
                                                                "input": json.loads(_args(n))}]})
                msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{n}",
                                                          "content": str(_t(n + 1))}]})
            out.append({"model": "m", "max_tokens": 1024, "system": INSTRUCTIONS, "messages": msgs,
                        "tools": RAW_TOOLS_ANTHROPIC})
        else:
            msgs = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": PROMPT}]
            for n in range(i):
                msgs.append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{n}", "type": "function", "function": {"name": "add", "arguments": _args(n)}}]})
                msgs.append({"role": "tool", "tool_call_id": f"call_{n}", "content": str(_t(n + 1))})
            out.append({"model": "m", "messages": msgs, "tools": RAW_TOOLS_OPENAI})
    return out


# ------------------------------------------------------------------ one run
def make_model(mode: str, endpoint: Endpoint) -> Any:
    import httpx2

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(endpoint))
    if mode.startswith("anthropic"):
        import anthropic

        from treadle.models.anthropic import AnthropicModel

        client = anthropic.AsyncAnthropic(api_key="sk-ant-bench", base_url="https://api.anthropic.test",
                                          http_client=http)
        return AnthropicModel("claude-sonnet-4-6", client=client, max_retries=0,
                              structured_output=mode == "anthropic")
    import openai

    from treadle.models.openai import OpenAIModel

    client = openai.AsyncOpenAI(api_key="sk-bench", base_url="https://api.openai.test/v1", http_client=http)
    if mode == "openai-json":
        return OpenAIModel("gpt-4o-mini", client=client, max_retries=0, native_tools=False, json_schema_mode=True,
                           structured_output=False)
    return OpenAIModel("gpt-4o-mini", client=client, max_retries=0, structured_output=mode == "openai")


@dataclass
class Row:
    mode: str
    answer: str
    ok: bool
    requests: int
    added: list[int]          # tokens added per request over RAW's matching request
    schema_tokens: int        # the answer type's compact schema, once (0 for str)
    tools_identical: bool     # the tools' JSON is the same in every request of the run
    bodies: list[dict[str, Any]]
    raw_bytes: list[bytes]


async def run_one(mode: str, answer_name: str, count: Callable[[str], int] = approx_tokens) -> Row:
    from treadle import Agent, Runner
    from treadle.models._schema import compact_schema
    from treadle.planner import answer_schema

    tp, value = ANSWERS[answer_name]
    provider = "anthropic" if mode.startswith("anthropic") else "openai"
    endpoint = Endpoint(provider, value)
    model = make_model(mode, endpoint)
    agent = Agent(name="bench", tools=[add], model=model, instructions=INSTRUCTIONS, max_steps=K + 4,
                  answer_data_type=tp)
    result = await Runner(agent).acall(PROMPT)
    expected = tp.model_validate(value) if isinstance(tp, type) and issubclass(tp, BaseModel) else value
    raw = raw_bodies(provider)
    added = [prompt_tokens(b, count) - prompt_tokens(r, count) for b, r in zip(endpoint.bodies, raw)]
    tools = [_compact(b.get("tools")) for b in endpoint.bodies]
    schema = 0 if tp is str else count(_compact(compact_schema(answer_schema(tp))))
    return Row(mode, answer_name, result.status == "success" and result.answer == expected, len(endpoint.bodies),
               added, schema, len(set(tools)) == 1, endpoint.bodies, endpoint.raw_bytes)


async def run_all(count: Callable[[str], int] = approx_tokens) -> list[Row]:
    return [await run_one(mode, name, count) for mode in MODES for name in ANSWERS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the rows (without bodies) to this file")
    ap.add_argument("--approx", action="store_true", help="use the approximate counter even if tiktoken is there")
    args = ap.parse_args()
    tik = None if args.approx else _tiktoken()
    count = tik or approx_tokens
    rows = asyncio.run(run_all(count))
    unit = "cl100k_base" if tik else "approx. (words + punctuation)"
    print(f"tokens added per request over the hand-written loop ({unit}); requests 1..6")
    print(f"{'mode':<15} {'answer':<10} {'ok':<3} {'added per request':<34} {'max':>4} {'schema once':>11} tools same")
    for r in rows:
        print(f"{r.mode:<15} {r.answer:<10} {'yes' if r.ok else 'NO':<3} {r.added!s:<34} {max(r.added):>4} "
              f"{r.schema_tokens:>11} {'yes' if r.tools_identical else 'NO'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counter": unit, "rows": [{k: v for k, v in r.__dict__.items()
                                                  if k not in ("bodies", "raw_bytes")} for r in rows]}, f, indent=1)
    if not all(r.ok for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
