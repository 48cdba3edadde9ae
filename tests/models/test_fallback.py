"""FallbackModel, with ScriptedModels standing in for providers that fail."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from helpers import run_face
from treadle import Agent, Runner
from treadle.errors import (
    ModelAuthenticationError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelContextTooLongError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelResponseError,
    ModelServerError,
    ModelTimeoutError,
    UserError,
)
from treadle.models.base import ModelDelta, ModelRequest, ModelResponse
from treadle.models.fallback import DEFAULT_FALLBACK_ON, FallbackModel
from treadle.models.scripted import ScriptedModel
from treadle.types import Function

REQ = ModelRequest(messages=[{"role": "user", "content": "hi"}])


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.parametrize("error", [
    ModelConnectionError("down"), ModelTimeoutError("slow"), ModelRateLimitError("429", status_code=429),
    ModelServerError("500", status_code=500), ModelNotFoundError("no model", status_code=404),
    ModelAuthenticationError("bad key", status_code=401),
])
async def test_falls_back_on_provider_failures(error: Exception) -> None:
    a, b = ScriptedModel([error], name="a"), ScriptedModel(["from b"], name="b")
    resp = await FallbackModel([a, b]).request(REQ)
    assert resp.text == "from b" and a.calls == 1 and b.calls == 1


@pytest.mark.parametrize("error", [ModelBadRequestError("bad", status_code=400),
                                   ModelContextTooLongError("long", status_code=400),
                                   ModelResponseError("garbled"), ValueError("bug")])
async def test_other_errors_are_raised_at_once(error: Exception) -> None:
    a, b = ScriptedModel([error]), ScriptedModel(["never"])
    with pytest.raises(type(error)):
        await FallbackModel([a, b]).request(REQ)
    assert b.calls == 0


def test_default_fallback_errors() -> None:
    assert set(DEFAULT_FALLBACK_ON) == {ModelConnectionError, ModelTimeoutError, ModelRateLimitError,
                                        ModelServerError, ModelNotFoundError, ModelAuthenticationError}


async def test_first_success_wins_and_later_models_are_not_asked() -> None:
    a, b = ScriptedModel(["from a"]), ScriptedModel(["from b"])
    assert (await FallbackModel([a, b]).request(REQ)).text == "from a"
    assert b.calls == 0


async def test_all_fail_raises_the_last_error() -> None:
    last = ModelServerError("c is down", status_code=503)
    models = [ScriptedModel([ModelConnectionError("a")]), ScriptedModel([ModelRateLimitError("b")]),
              ScriptedModel([last])]
    with pytest.raises(ModelServerError) as info:
        await FallbackModel(models).request(REQ)
    assert info.value is last


async def test_fallback_on_is_configurable() -> None:
    a, b = ScriptedModel([ModelContextTooLongError("long")]), ScriptedModel(["bigger context"])
    fm = FallbackModel([a, b], fallback_on=(ModelContextTooLongError,))
    assert (await fm.request(REQ)).text == "bigger context"
    c, d = ScriptedModel([ModelServerError("500")]), ScriptedModel(["never"])
    with pytest.raises(ModelServerError):
        await FallbackModel([c, d], fallback_on=(ModelContextTooLongError,)).request(REQ)


def test_native_tools_is_the_first_models() -> None:
    assert FallbackModel([ScriptedModel(native_tools=True), ScriptedModel()]).native_tools is True
    assert FallbackModel([ScriptedModel(), ScriptedModel(native_tools=True)]).native_tools is False
    assert FallbackModel([ScriptedModel()]).final_style == "seed"
    small = ScriptedModel()
    small.final_style = "finish"  # type: ignore[attr-defined]
    assert FallbackModel([small, ScriptedModel()]).final_style == "finish"
    with pytest.raises(UserError):
        FallbackModel([])
    with pytest.raises(UserError):
        FallbackModel([object()])


async def test_stream_falls_back_before_the_first_chunk() -> None:
    a = ScriptedModel([ModelServerError("down")])
    b = ScriptedModel(["streamed from b"], stream_chunk=4)
    chunks = [c async for c in FallbackModel([a, b]).stream(REQ)]
    assert isinstance(chunks[-1], ModelResponse) and chunks[-1].text == "streamed from b"
    assert "".join(c.text for c in chunks[:-1]) == "streamed from b"


class _DiesMidStream:
    """A streaming model that sends one delta, then fails."""

    native_tools = False
    name = "dies"

    def __init__(self) -> None:
        self.closed = False

    async def request(self, request: ModelRequest) -> ModelResponse:
        raise AssertionError("not used")

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta | ModelResponse]:
        try:
            yield ModelDelta(text="par")
            raise ModelConnectionError("dropped")
        finally:
            self.closed = True


async def test_stream_does_not_fall_back_after_the_first_chunk() -> None:
    a, b = _DiesMidStream(), ScriptedModel(["never"])
    got: list[Any] = []
    with pytest.raises(ModelConnectionError):
        async for c in FallbackModel([a, b]).stream(REQ):
            got.append(c)
    assert [c.text for c in got] == ["par"] and b.calls == 0 and a.closed


class _RequestOnly:
    native_tools = False

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def request(self, request: ModelRequest) -> ModelResponse:
        if isinstance(self.reply, BaseException):
            raise self.reply
        return ModelResponse(text=self.reply)


async def test_stream_over_models_without_stream() -> None:
    chunks = [c async for c in FallbackModel([_RequestOnly(ModelTimeoutError("t")), _RequestOnly("ok")]).stream(REQ)]
    assert len(chunks) == 1 and chunks[0].text == "ok"


async def test_stream_all_fail_raises_the_last_error() -> None:
    with pytest.raises(ModelRateLimitError):
        async for _ in FallbackModel([ScriptedModel([ModelServerError("a")]),
                                      ScriptedModel([ModelRateLimitError("b")])]).stream(REQ):
            pass


async def test_in_a_run(face: str) -> None:
    primary = ScriptedModel([ModelRateLimitError("slow down", status_code=429)], repeat_last=True, name="primary")
    backup = ScriptedModel([Function(name="add", kwargs={"a": 1, "b": 2}),
                            Function(name="finish", kwargs={"answer": "3"})], name="backup")
    res, _ = await run_face(Runner(Agent(tools=[add], model=FallbackModel([primary, backup]))), face)
    assert res.status == "success" and res.answer == "3"
    assert [s.observation for s in res.step_history] == [3]
    assert primary.calls == 2 and backup.calls == 2
