"""AdalFlowModel reads the shapes AdalFlow clients return: streamed events of several SDKs,
usage objects and dicts, and outputs that are only partly like a GeneratorOutput."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from treadle.models.adalflow_client import AdalFlowModel, is_adalflow_client, usage_of
from treadle.models.base import ModelDelta, ModelRequest, ModelResponse
from treadle.types import GeneratorOutput, Usage

REQUEST = ModelRequest(messages=[{"role": "user", "content": "hi"}])


class Client:
    def __init__(self, completion: Any, parse: Any = None) -> None:
        self.completion = completion
        self.parse = parse

    def call(self, api_kwargs: Any = None, model_type: Any = None) -> Any:
        return self.completion

    def parse_chat_completion(self, completion: Any) -> Any:
        return self.parse(completion) if self.parse else GeneratorOutput(raw_response=completion)


async def collect(model: AdalFlowModel) -> tuple[list[ModelDelta], ModelResponse]:
    items = [i async for i in model.stream(REQUEST)]
    final = items[-1]
    assert isinstance(final, ModelResponse)
    return [i for i in items[:-1] if isinstance(i, ModelDelta)], final


def openai_chunk(text: str) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                               "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]})


async def test_openai_chat_chunks_stream_their_content() -> None:
    deltas, resp = await collect(AdalFlowModel(Client(iter([openai_chunk("Hel"), openai_chunk("lo")]))))
    assert [d.text for d in deltas] == ["Hel", "lo"] and resp.text == "Hello"


async def test_responses_api_events_stream_deltas_and_the_completed_text() -> None:
    async def events() -> Any:
        yield SimpleNamespace(type="response.created")
        yield SimpleNamespace(type="response.output_text.delta", delta="Hi")
        yield SimpleNamespace(type="response.reasoning.delta", delta="ignored")
    deltas, resp = await collect(AdalFlowModel(Client(events())))
    assert [d.text for d in deltas] == [None, "Hi", None] and resp.text == "Hi"

    def completed_only() -> Iterator[Any]:
        yield SimpleNamespace(type="response.completed", response=SimpleNamespace(output_text="whole"))
    _, resp = await collect(AdalFlowModel(Client(completed_only())))
    assert resp.text == "whole"


async def test_dict_and_string_events() -> None:
    deltas, resp = await collect(AdalFlowModel(Client(iter([{"delta": "a"}, {"text": "b"}, "c", {"other": 1}]))))
    assert [d.text for d in deltas] == ["a", "b", "c", None] and resp.text == "abc"


@pytest.mark.parametrize("usage, counts", [
    (Usage(input_tokens=3, output_tokens=4, requests=1), (3, 4)),
    ({"prompt_tokens": 5, "completion_tokens": 6}, (5, 6)),
    ({"input_tokens": 7.0, "output_tokens": 8}, (7, 8)),
    (CompletionUsage(prompt_tokens=9, completion_tokens=10, total_tokens=19), (9, 10)),
    (SimpleNamespace(input_tokens=11, output_tokens=12), (11, 12)),
    (SimpleNamespace(prompt_tokens=None, completion_tokens=True, input_tokens=13, output_tokens="x"), (13, 0)),
    (SimpleNamespace(), (0, 0)),
])
def test_usage_shapes(usage: Any, counts: tuple[int, int]) -> None:
    got = usage_of(usage)
    assert got is not None and (got.input_tokens, got.output_tokens) == counts
    assert usage_of(None) is None


async def test_an_output_with_only_some_fields() -> None:
    partial = SimpleNamespace(data="the answer", thinking="hmm", usage={"prompt_tokens": 2})
    _, resp = await collect(AdalFlowModel(Client("ignored", parse=lambda c: partial)))
    assert resp.text == "the answer" and resp.thinking == "hmm" and resp.usage is not None
    assert resp.usage.input_tokens == 2
    _, resp = await collect(AdalFlowModel(Client("ignored", parse=lambda c: "plain text")))
    assert resp.text == "plain text" and resp.usage is None


def test_shapes_recognised() -> None:
    class Model:
        native_tools = False

        def call(self) -> None: ...

        async def request(self, request: Any) -> Any: ...

    assert is_adalflow_client(Client(None))
    assert not is_adalflow_client(Model()) and not is_adalflow_client("gpt") and not is_adalflow_client(None)
