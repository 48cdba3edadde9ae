"""Fakes in AdalFlow's style: a ModelClient, a planner, a tool manager, a duck-typed agent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from treadle.compat import Function, FunctionOutput, GeneratorOutput, ModelClient
from treadle.types import ModelType


def call_json(name: str, **kwargs: Any) -> str:
    return json.dumps({"thought": f"use {name}", "name": name, "kwargs": kwargs})


def answer_json(answer: Any) -> str:
    return json.dumps({"thought": "done", "_is_answer_final": True, "_answer": answer})


class FakeClient(ModelClient):
    """Answers from a script; records every api_kwargs it is sent and through which method."""

    def __init__(self, replies: list[Any], usage: dict[str, int] | None = None) -> None:
        super().__init__()
        self.replies = list(replies)
        self.usage = usage
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def convert_inputs_to_api_kwargs(self, input: Any = None, model_kwargs: dict[str, Any] | None = None,
                                     model_type: ModelType = ModelType.UNDEFINED) -> dict[str, Any]:
        assert model_type is ModelType.LLM
        return {"messages": [{"role": "user", "content": input}], **(model_kwargs or {})}

    def call(self, api_kwargs: dict[str, Any] | None = None, model_type: ModelType = ModelType.UNDEFINED) -> Any:
        self.sent.append(("call", dict(api_kwargs or {})))
        return self.replies.pop(0)

    async def acall(self, api_kwargs: dict[str, Any] | None = None,
                    model_type: ModelType = ModelType.UNDEFINED) -> Any:
        await asyncio.sleep(0)
        self.sent.append(("acall", dict(api_kwargs or {})))
        return self.replies.pop(0)

    def parse_chat_completion(self, completion: Any) -> GeneratorOutput[Any]:
        if isinstance(completion, Exception):
            return GeneratorOutput(data=None, error=str(completion), raw_response=None)
        return GeneratorOutput(data=None, raw_response=completion, usage=self.usage)


class SyncOnlyClient:
    """No base class and no acall: the adapter must use ``call``."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def convert_inputs_to_api_kwargs(self, input: Any = None, model_kwargs: Any = None, model_type: Any = None) -> Any:
        return {"input": input, **(model_kwargs or {})}

    def call(self, api_kwargs: Any = None, model_type: Any = None) -> Any:
        self.prompts.append(api_kwargs["input"])
        return self.replies.pop(0)

    def parse_chat_completion(self, completion: Any) -> Any:
        return GeneratorOutput(raw_response=completion)


class StreamingClient(FakeClient):
    """``stream=True`` in model_kwargs: the completion is an async generator of text chunks."""

    async def acall(self, api_kwargs: dict[str, Any] | None = None,
                    model_type: ModelType = ModelType.UNDEFINED) -> Any:
        self.sent.append(("acall", dict(api_kwargs or {})))
        text = self.replies.pop(0)
        if not (api_kwargs or {}).get("stream"):
            return text

        async def chunks() -> Any:
            for i in range(0, len(text), 7):
                await asyncio.sleep(0)
                yield text[i:i + 7]
        return chunks()


class SeedFunction(Function):
    """A Function subclass, as the seed's tests build them."""

    def __init__(self, name: str, kwargs: dict[str, Any] | None = None, _is_answer_final: bool = False,
                 _answer: Any = None) -> None:
        super().__init__(name=name, kwargs=kwargs or {})
        self._is_answer_final = _is_answer_final
        self._answer = _answer


class FakePlanner:
    """The seed planner protocol: call/acall(prompt_kwargs=, model_kwargs=, use_cache=, id=)."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = [o if isinstance(o, GeneratorOutput) or not isinstance(o, Function) else GeneratorOutput(data=o)
                        for o in outputs]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _next(self, how: str, kwargs: dict[str, Any]) -> Any:
        snapshot = dict(kwargs)
        snapshot["prompt_kwargs"] = dict(kwargs["prompt_kwargs"])
        snapshot["steps_seen"] = len(kwargs["prompt_kwargs"].get("step_history", []))
        self.calls.append((how, snapshot))
        if not self.outputs:
            raise IndexError("No more outputs")
        return self.outputs.pop(0)

    def call(self, *, prompt_kwargs: dict[str, Any], model_kwargs: Any = None, use_cache: Any = None,
             id: Any = None) -> Any:
        return self._next("call", {"prompt_kwargs": prompt_kwargs, "model_kwargs": model_kwargs,
                                   "use_cache": use_cache, "id": id})

    async def acall(self, *, prompt_kwargs: dict[str, Any], model_kwargs: Any = None, use_cache: Any = None,
                    id: Any = None) -> Any:
        await asyncio.sleep(0)
        return self._next("acall", {"prompt_kwargs": prompt_kwargs, "model_kwargs": model_kwargs,
                                    "use_cache": use_cache, "id": id})

    def get_prompt(self, **kwargs: Any) -> str:
        return f"prompt({sorted(kwargs)})"


class FakeToolManager:
    """The seed tool manager protocol: execute_func / execute_func_async -> FunctionOutput."""

    def __init__(self, results: dict[str, Any] | None = None) -> None:
        self.results = results or {}
        self.executed: list[tuple[str, str, dict[str, Any]]] = []

    def _run(self, how: str, func: Any) -> FunctionOutput:
        self.executed.append((how, func.name, dict(func.kwargs)))
        value = self.results.get(func.name, f"out_{func.name}")
        if isinstance(value, Exception):
            return FunctionOutput(name=func.name, input=func, output=None, error=str(value))
        return FunctionOutput(name=func.name, input=func, output=value(**func.kwargs) if callable(value) else value)

    def execute_func(self, func: Any) -> FunctionOutput:
        return self._run("execute_func", func)

    async def execute_func_async(self, func: Any) -> FunctionOutput:
        return self._run("execute_func_async", func)


class DuckAgent:
    """An object with an Agent's shape and nothing else."""

    def __init__(self, planner: Any, max_steps: int = 10, tool_manager: Any = None,
                 answer_data_type: Any = None) -> None:
        self.planner = planner
        self.max_steps = max_steps
        self.tool_manager = tool_manager if tool_manager is not None else FakeToolManager()
        self.answer_data_type = answer_data_type
