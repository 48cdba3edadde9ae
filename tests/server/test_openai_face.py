"""The OpenAI-compatible face, driven by the `openai` Python SDK against a real server on loopback:
models, chat completions (streaming and not), a multi-turn conversation, an approval round trip
(live, and across a `treadle serve` restart), and malformed requests answered with OpenAI's error
shape, never a 5xx."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from server_utils import serving, wait_journaled
from test_serve_cli import free_port, serve

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(120)
TOKEN = "face-t0k"


def recall_model() -> ScriptedModel:
    """Answers with the input and the last line of the chat history it was given."""

    def reply(messages: list[Any]) -> Any:
        system = str(messages[0]["content"])
        history = system.split("<CHAT_HISTORY>")[-1].split("</CHAT_HISTORY>")[0].strip() if "<CHAT_HISTORY>" in system \
            else ""
        last = history.splitlines()[-1] if history else "nothing"
        return Function(name="finish", kwargs={"answer": f"{messages[-1]['content']} | before: {last}"})

    return ScriptedModel([reply], repeat_last=True, name="recall-model")


@pytest.fixture
def face_agents(agents: dict[str, Agent[Any]]) -> dict[str, Agent[Any]]:
    return {**agents, "recall": Agent(name="recall", model=recall_model())}


@pytest.fixture
def url(face_agents: dict[str, Agent[Any]], store_url: str) -> Iterator[str]:
    from treadle.server import create_app

    with serving(create_app(face_agents, store=store_url, token=TOKEN)) as base:
        yield base


@pytest.fixture
def client(url: str) -> Any:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=30)


def test_models_list_the_served_agents(client: Any) -> None:
    assert [m.id for m in client.models.list()] == ["echo", "approver", "slow", "recall"]
    assert client.models.retrieve("echo").owned_by == "treadle"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ghost")


def test_chat_completion_runs_the_agent(client: Any) -> None:
    done = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "TOKEN: t1 go"}])
    assert done.choices[0].message.content == "42 for t1"
    assert done.choices[0].finish_reason == "stop" and done.object == "chat.completion"
    assert done.usage.prompt_tokens > 0 and done.usage.total_tokens == done.usage.prompt_tokens + \
        done.usage.completion_tokens
    extra = done.model_extra["treadle"]  # tool activity, in a field standard clients ignore
    assert extra["status"] == "success"
    assert [(a["type"], a["name"]) for a in extra["tool_activity"]] == [("tool_call", "calculator"),
                                                                       ("tool_result", "calculator")]


def test_streaming_chunks_end_with_usage_and_done(client: Any, url: str) -> None:
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "TOKEN: s1 go"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "42 for s1"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert any((c.model_extra or {}).get("treadle", {}).get("type") == "tool_result" for c in chunks)
    raw = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                     json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": "TOKEN: s2"}]})
    assert raw.text.rstrip().endswith("data: [DONE]") and '"usage"' not in raw.text.split("[DONE]")[0][-300:]


def test_a_multi_turn_conversation_reaches_the_model(client: Any) -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "my name is Ann"}]
    first = client.chat.completions.create(model="recall", messages=messages).choices[0].message.content
    assert first == "my name is Ann | before: System: Be brief."
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "who am I?"}]
    second = client.chat.completions.create(model="recall", messages=messages).choices[0].message.content
    assert second.startswith("who am I? | before: Assistant: my name is Ann"), second


def test_an_approval_round_trip(client: Any) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "tidy up"}]
    asked = client.chat.completions.create(model="approver", messages=messages)
    question = asked.choices[0].message.content
    assert "delete_file" in question and '"approve"' in question and asked.choices[0].finish_reason == "stop"
    run_id = asked.model_extra["treadle"]["run_id"]
    assert re.search(rf"\[treadle: run {run_id} waits for approval of call \S+\]", question)
    messages += [{"role": "assistant", "content": question}, {"role": "user", "content": "approve"}]
    done = client.chat.completions.create(model="approver", messages=messages)
    assert done.choices[0].message.content == "done"
    assert done.model_extra["treadle"]["run_id"] == run_id  # the same durable run went on
    assert done.model_extra["treadle"]["tool_activity"][-1]["output"] == "deleted notes.txt"
    # denied, streaming: the model sees the reason, the run goes on to its answer
    asked = client.chat.completions.create(model="approver", messages=[{"role": "user", "content": "tidy"}])
    question = asked.choices[0].message.content
    stream = client.chat.completions.create(model="approver", stream=True, messages=[
        {"role": "user", "content": "tidy"}, {"role": "assistant", "content": question},
        {"role": "user", "content": "deny not today"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "done"
    results = [c.model_extra["treadle"] for c in chunks if (c.model_extra or {}).get("treadle", {}).get("type")
               == "tool_result"]
    assert results and "not today" in str(results[0]["output"]), results


def test_malformed_requests_get_openai_errors(client: Any, url: str) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="echo", messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{", headers={"Authorization": f"Bearer {TOKEN}",
                                                                          "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{url}/v1/embeddings", json={"input": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 405 and "message" in r.json()["error"] and r.headers["allow"] == "POST"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=12)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_text"]),
                             "text": st.text(max_size=9)})
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "bot"]),
     "content": st.one_of(st.text(max_size=30), st.none(), st.lists(PART, max_size=2), JSON)},
    optional={"tool_call_id": st.text(max_size=6), "name": st.text(max_size=6),
              "tool_calls": st.lists(st.fixed_dictionaries({"id": st.text(max_size=4), "type": st.just("function"),
                                                            "function": st.fixed_dictionaries(
                                                                {"name": st.text(max_size=5),
                                                                 "arguments": st.text(max_size=8)})}), max_size=2)})
VALID = st.fixed_dictionaries({"model": st.sampled_from(["echo", "recall"]),
                               "messages": st.just([{"role": "user", "content": "TOKEN: fz go"}])},
                              optional={"stream": st.booleans(), "temperature": st.floats(0, 2)})
NEAR = st.fixed_dictionaries(  # the shape of a request, with any of its parts wrong
    {"model": st.sampled_from(["echo", "recall", "ghost", ""]),
     "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
    optional={"stream": st.booleans() | JSON, "n": st.integers(0, 3) | JSON,
              "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | JSON,
              "treadle_run_id": st.text(max_size=8) | JSON})
BODY = st.one_of(VALID, NEAR, NEAR, JSON, st.fixed_dictionaries({"model": JSON, "messages": JSON}))


def test_fuzzed_bodies_get_an_answer_or_openai_error_never_5xx(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    seen: dict[int, int] = {}

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: each example is a request
    @given(BODY)
    def check(body: Any) -> None:
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=30)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            err = r.json()["error"]
            assert isinstance(err["message"], str) and err["type"], r.text
        elif body.get("stream") is True:
            assert r.text.rstrip().endswith("data: [DONE]")
        else:
            assert r.json()["object"] == "chat.completion"

    check()
    assert seen.get(400) and seen.get(200), seen


def test_an_approval_survives_a_server_restart(tmp_path: Path) -> None:
    """`treadle serve` is killed while the run waits; a client that knows nothing of treadle
    sends the conversation with "approve" to the restarted server and gets the run's answer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)
    args = ["served_agents:make_gated", "--port", str(port)]
    with serve(args, tmp_path, base, kill=True):
        messages: list[dict[str, Any]] = [{"role": "user", "content": "tidy up"}]
        asked = client.chat.completions.create(model="gate", messages=messages)
        run_id = asked.model_extra["treadle"]["run_id"]
        wait_journaled(tmp_path, run_id, "waiting_for_approval")
    with serve(args, tmp_path, base):
        messages += [{"role": "assistant", "content": asked.choices[0].message.content},
                     {"role": "user", "content": "approve"}]
        stream = client.chat.completions.create(model="gate", messages=messages, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "done"
        assert chunks[-1].usage.total_tokens > 0
        assert httpx.get(f"{base}/runs/{run_id}").json()["status"] == "success"
        steps = httpx.get(f"{base}/runs/{run_id}").json()["step_history"]
        assert steps[0]["observation"] == "deleted notes.txt", json.dumps(steps)[:500]


def test_responses_api_with_previous_response_id(client: Any) -> None:
    first = client.responses.create(model="recall", input="my name is Ann", instructions="Be brief.")
    assert first.output_text == "my name is Ann | before: System: Be brief." and first.status == "completed"
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    events = list(client.responses.create(model="recall", input="who am I?", previous_response_id=first.id,
                                          stream=True))
    assert [e.type for e in events][0] == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "who am I? | before: Assistant: my name is Ann | before: System: Be brief."
    assert events[-1].response.output_text == text
    asked = client.responses.create(model="approver", input="tidy up")
    assert "delete_file" in asked.output_text
    done = client.responses.create(model="approver", input="approve", previous_response_id=asked.id)
    assert done.output_text == "done"
    assert done.model_extra["treadle"]["run_id"] == asked.model_extra["treadle"]["run_id"]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="approver", input="x", previous_response_id="resp_nope~1")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="echo", input=[{"role": "assistant", "content": "x"}])


def test_fuzzed_responses_bodies_never_get_a_5xx(url: str) -> None:
    item = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool"]),
                                  "content": st.text(max_size=10) | st.lists(PART, max_size=2) | JSON},
                                 optional={"type": st.sampled_from(["message", "function_call"])})
    body = st.one_of(JSON, st.fixed_dictionaries(
        {"model": st.sampled_from(["echo", "ghost"]), "input": st.text(max_size=10) | st.lists(item, max_size=2)},
        optional={"previous_response_id": st.sampled_from(["resp_x~1", "bad"]) | JSON, "stream": st.booleans(),
                  "instructions": st.text(max_size=5) | JSON}))
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(body)
    def check(b: Any) -> None:
        r = httpx.post(f"{url}/v1/responses", json=b, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert isinstance(r.json()["error"]["message"], str), r.text

    check()
    assert seen.get(400), seen
