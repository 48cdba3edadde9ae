"""OTelTracer: spans from one event stream (see ``treadle.tracing``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from .. import events as ev
from ..events import RawResponsesStreamEvent, RunItem, RunItemStreamEvent, StreamEvent
from ..models._guards import is_list, is_tuple
from ..models.base import ModelDelta
from ..types import Function, RunnerResult, StepOutput, Usage
from ._common import (
    REQUEST_PARAMS,
    SCOPE,
    Part,
    content_enabled,
    error_kind,
    finish_reason,
    load_api,
    looks_secret,
    output_parts,
    server_of,
    version,
)
from ._nested import NestingSpans
from ._state import Attributes, RunView, TracedRun, current_task, is_result, ns
from ._tools import ToolSpans

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

_JSON = "application/json"
_OFF = None  # a run whose span is not recording (no SDK, or sampled out): nothing is tracked for it


# what the tracer reads of an agent, its model and its memory: each optional (a duck-typed agent
# or model may lack it), so each is a Protocol checked with isinstance
@runtime_checkable
class _Named(Protocol):
    @property
    def name(self) -> object: ...


@runtime_checkable
class _HasModel(Protocol):
    @property
    def model(self) -> object: ...


@runtime_checkable
class _Provider(Protocol):
    @property
    def provider(self) -> object: ...


@runtime_checkable
class _Session(Protocol):
    @property
    def session_id(self) -> object: ...


def _agent_model(agent: object) -> object:
    """The agent's model client (None when it cannot be resolved: the run itself will report it)."""
    try:
        return agent.model if isinstance(agent, _HasModel) else None
    except Exception:  # an unresolvable model string
        return None


def _request_model(model_kwargs: dict[str, object], model: object) -> object:
    return model_kwargs.get("model") or (model.model if isinstance(model, _HasModel) else None) \
        or (model.name if isinstance(model, _Named) else None)


class OTelTracer(ToolSpans, NestingSpans):
    """Turns treadle's events into OpenTelemetry spans (see the module docstring).

    Args:
        tracer_provider: where spans go; default the global provider (looked up lazily, so a
            provider set after this tracer was made is still used).
        include_content: record prompts, model output, tool arguments/results and answers;
            default from ``TREADLE_TRACE_CONTENT``.
        set_current: make the run's span (and a tool's span while it runs) the current span, so
            spans made by your own code or by other instrumentations inside a tool nest under it.
        max_content_chars: longest content attribute (longer ones are cut, with a marker).
        max_open_runs: runs tracked at once; beyond it the oldest is ended (a guard against runs
            whose final event never arrives).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, include_content: bool | None = None, *,
                 set_current: bool = True, max_content_chars: int = 20_000, max_open_runs: int = 10_000) -> None:
        trace, context = load_api()
        self._attach = context.attach
        self._detach_token = context.detach
        self._Status = trace.Status
        self._ERROR = trace.StatusCode.ERROR
        self._CLIENT = trace.SpanKind.CLIENT
        self._set_span = trace.set_span_in_context
        if tracer_provider is None:
            self._tracer = trace.get_tracer(SCOPE, version())
        else:
            self._tracer = tracer_provider.get_tracer(SCOPE, version())
        self.include_content = content_enabled() if include_content is None else bool(include_content)
        self.set_current = set_current
        self.max_content_chars = max_content_chars
        self.max_open_runs = max_open_runs
        self._runs: dict[str, TracedRun | None] = {}
        self._item_handlers: dict[str, Callable[[TracedRun, RunItem], None]] = {
            ev.TOOL_CALL_START: self._tool_start, ev.TOOL_CALL_COMPLETE: self._tool_complete,
            ev.TOOL_CALL_ACTIVITY: self._tool_activity, ev.TOOL_PERMISSION_REQUEST: self._permission,
            ev.STEP_COMPLETE: self._step_complete, ev.CANCEL_RECEIVED: self._cancel_received,
            ev.CANCELLED: self._cancelled, ev.GUARDRAIL: self._guardrail, ev.HANDOFF: self._handoff,
            ev.COMPACTION: self._compaction,
        }

    # ------------------------------------------------------------------ the handler protocol
    def on_run_start(self, run: RunView) -> None:
        """Called by the driver when a run starts: the run's span opens here."""
        if run.run_id in self._runs:  # this tracer is in the sinks twice
            return
        self._begin(run.run_id, run, ns(run.started_at) if run.started_at else time.time_ns())

    def __call__(self, event: StreamEvent) -> None:
        rid = event.run_id or ""
        runs = self._runs
        if rid in runs:
            st = runs[rid]
        elif isinstance(event, RunItemStreamEvent) and event.name == ev.EXECUTION_COMPLETE:
            return  # a second delivery of a run's last event (this tracer is in the sinks twice)
        else:  # no on_run_start (a handler added late, or a stream cancelled before its task ran)
            st = self._begin(rid, None, time.time_ns())
        if st is None:  # not recording: only the end matters, to forget the run
            if isinstance(event, RunItemStreamEvent) and event.name == ev.EXECUTION_COMPLETE:
                del runs[rid]
            return
        seq = event.seq
        if seq:
            if seq <= st.seq:  # delivered twice: once is enough
                return
            st.seq = seq
        if isinstance(event, RawResponsesStreamEvent):
            self._raw(st, event)
            return
        name = event.name
        if name == ev.EXECUTION_COMPLETE:
            del runs[rid]
            self._end_run(st, event.item)
            return
        handler = self._item_handlers.get(name)
        if handler is not None:
            handler(st, event.item)

    @property
    def open_runs(self) -> list[str]:
        """Run ids whose spans are still open."""
        return list(self._runs)

    # ------------------------------------------------------------------ run
    def _begin(self, run_id: str, run: RunView | None, start: int) -> TracedRun | None:
        if len(self._runs) >= self.max_open_runs:
            self._evict()
        agent = run.agent if run is not None else None
        agent_name = agent.name if isinstance(agent, _Named) else None
        model = _agent_model(agent)
        mk: dict[str, object] = dict(run.model_kwargs) if run is not None else {}
        request_model = _request_model(mk, model)
        # required by the conventions: a client with no ``provider`` is named by its class
        provider = (model.provider if isinstance(model, _Provider) else None) or \
            (type(model).__name__ if model is not None else None)
        attrs: Attributes = {"gen_ai.operation.name": "invoke_agent", "treadle.run_id": run_id}
        if agent_name:
            attrs["gen_ai.agent.name"] = str(agent_name)
        if provider:
            attrs["gen_ai.provider.name"] = str(provider)
        if request_model:
            attrs["gen_ai.request.model"] = str(request_model)
        if run is not None:
            attrs["treadle.max_steps"] = int(run.max_steps)
            conv = run.memory.session_id if isinstance(run.memory, _Session) else None
            if isinstance(conv, str) and conv:
                attrs["gen_ai.conversation.id"] = conv
        server = server_of(model)
        if server is not None:
            attrs["server.address"], port = server
            if port:
                attrs["server.port"] = port
        name = f"invoke_agent {agent_name}" if agent_name else "invoke_agent"
        parent_ctx = self._parent_context(run) if run is not None else None
        parent_run = run.parent if run is not None else None
        if parent_run is not None:
            attrs["treadle.parent_run_id"] = parent_run.run_id
        span = self._tracer.start_span(name, context=parent_ctx, start_time=start, attributes=attrs)
        if not span.is_recording():
            self._runs[run_id] = _OFF
            return _OFF
        st = TracedRun(run_id, run, span, self._set_span(span, None), start)
        st.secrets = tuple(str(v) for k, v in mk.items()
                           if isinstance(v, str) and len(v) >= 6 and looks_secret(k))
        base: Attributes = {k: attrs[k] for k in ("gen_ai.provider.name", "gen_ai.request.model", "server.address",
                                       "server.port") if k in attrs}
        base["gen_ai.operation.name"] = "chat"
        base["treadle.run_id"] = run_id
        for key, attr in REQUEST_PARAMS.items():
            v = mk.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                base[attr] = v
        stop = mk.get("stop")
        if isinstance(stop, str):
            base["gen_ai.request.stop_sequences"] = [stop]
        elif is_list(stop) or is_tuple(stop):
            stops = [s for s in stop if isinstance(s, str)]
            if len(stops) == len(stop):
                base["gen_ai.request.stop_sequences"] = stops
        if run is not None and run.stream_deltas:
            base["gen_ai.request.stream"] = True
        st.chat_base = base
        st.chat_name = f"chat {request_model}" if request_model else "chat"
        if self.include_content and run is not None:
            text = run.prompt_kwargs.get("input_str")
            if text is not None:
                value = self._text(text, st)
                span.set_attribute("input.value", value)
                span.set_attribute("gen_ai.input.messages", self._json(
                    [{"role": "user", "parts": [{"type": "text", "content": value}]}], st))
        if self.set_current and run is not None:
            st.tokens.append((self._attach(st.ctx), current_task()))
        self._runs[run_id] = st
        return st

    def _end_run(self, st: TracedRun, item: RunItem) -> None:
        data: object = item.data
        result = data if is_result(data) else None
        end = ns(item.created_at)
        status = (result.status if result is not None else None) or "error"
        error = (result.error if result is not None else None) or item.error
        if status == "success" and (st.step_span is None or st.step_end):
            # the final answer's model call: no event of its own in a stream without deltas
            self._open_step(st, (-1 if st.step is None else st.step) + 1, end)
            st.chat_last = end
        for span, start in st.tools.values():  # tool calls the ending interrupted
            span.set_attribute("treadle.tool.status", "interrupted")
            span.set_attribute("error.type", "interrupted")
            span.set_status(self._Status(self._ERROR, f"interrupted: the run ended ({status})"))
            span.end(end_time=max(end, start))
        st.tools.clear()
        if st.step_span is not None:
            self._close_step(st, end, result)
        # the response span: from the last thing that happened to the result
        run_id = st.run_id
        answer: object = result.answer if result is not None else None
        rattrs: Attributes = {"treadle.workflow_status": status, "treadle.run_id": run_id,
                              "openinference.span.kind": "CHAIN"}
        attrs: Attributes = {"treadle.workflow_status": status,
                                 "treadle.steps": 0 if st.step is None else st.step + 1}
        if answer is not None:
            rattrs["treadle.answer_type"] = type(answer).__name__
            if self.include_content:
                value = self._text(answer, st)
                output = self._json([{"role": "assistant", "parts": [{"type": "text", "content": value}],
                                      "finish_reason": "stop"}], st)
                rattrs["output.value"] = attrs["output.value"] = value
                attrs["gen_ai.output.messages"] = output  # (not on the response span: it is no GenAI operation)
        usage = result.usage if result is not None else None
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
            attrs["treadle.usage.requests"] = usage.requests
            attrs["treadle.usage.tool_calls"] = usage.tool_calls
            if usage.cost_usd:
                attrs["treadle.usage.cost_usd"] = float(usage.cost_usd)
            if usage.determined_replies:
                attrs["treadle.usage.determined_replies"] = usage.determined_replies
        status_error = None
        if error:
            rattrs["error.type"] = attrs["error.type"] = (result.error_type if result is not None else None) \
                or error_kind(error)
            status_error = self._Status(self._ERROR, self._error_text(error, st))
        response = self._tracer.start_span("response", context=st.ctx, start_time=min(st.last, end),
                                           attributes=rattrs)
        if status_error is not None:
            response.set_status(status_error)
        response.end(end_time=end)
        # the run span
        span = st.span
        span.set_attributes(attrs)
        if status_error is not None:
            span.set_status(status_error)
        span.end(end_time=max(end, st.start))
        self._detach(st.tokens)

    def _evict(self) -> None:
        try:
            rid = next(iter(self._runs))
            st = self._runs.pop(rid)
        except (StopIteration, RuntimeError, KeyError):  # another thread got there first
            return
        if st is None:
            return
        now = time.time_ns()
        for span in [*(s for s, _ in st.tools.values()), st.step_span, st.span]:
            if span is not None:
                span.set_attribute("treadle.evicted", True)
                span.end(end_time=now)

    # ------------------------------------------------------------------ steps and the model call
    def _raw(self, st: TracedRun, event: RawResponsesStreamEvent) -> None:
        now = time.time_ns()
        given: object = event.input
        step = given if type(given) is int else None
        if st.step_span is None or (step is not None and step != st.step) or (step is None and st.step_end):
            self._open_step(st, step if step is not None else (-1 if st.step is None else st.step) + 1, now)
        if not st.chat_first:
            st.chat_first = now
            if self.include_content and st.run is not None:
                st.messages = self._input_messages(st)
        st.chat_last = st.last = now
        if event.error:
            st.chat_error = event.error
        data: object = event.data
        if data is None or is_list(data):  # the parsed reply (or the model call's failure)
            if data is not None:
                st.chat_calls = [fn for fn in data if isinstance(fn, Function)]
            st.chat_finish = event.finish_reason
            st.chat_ran = event.model_ran
            usage: object = event.usage
            if isinstance(usage, Usage):
                st.chat_usage = usage
            if event.text is not None:
                st.chat_bad_text = event.text
        else:  # a streamed delta
            if st.chat_text is None:
                st.chat_text = []
            if self.include_content and isinstance(data, ModelDelta):
                if data.text:
                    st.chat_text.append(data.text)
                elif data.tool_name:
                    st.chat_text.append(f"[tool_call {data.tool_name} {data.arguments_delta or ''}]")
        model_name = event.model_name
        if model_name:
            st.response_model = model_name

    def _open_step(self, st: TracedRun, step: int, now: int) -> None:
        if st.step_span is not None:
            self._close_step(st, now, None)
        start = st.prev_end
        span = self._tracer.start_span(f"step {step}", context=st.ctx, start_time=start, attributes={
            "treadle.step": step, "treadle.run_id": st.run_id,
            "openinference.span.kind": "CHAIN"})
        st.step = step
        st.step_span = span
        st.step_ctx = self._set_span(span, st.ctx)
        st.step_start = start
        st.step_end = 0
        st.step_status = None
        st.step_usage = None
        st.chat_first = st.chat_last = 0
        st.chat_error = None
        st.chat_calls = None
        st.chat_text = None
        st.chat_finish = None
        st.chat_ran = True
        st.chat_usage = None
        st.chat_bad_text = None
        st.messages = None
        st.response_model = None

    def _ensure_step(self, st: TracedRun, now: int, step: int | None = None) -> None:
        """Tool and step events of a step whose model call sent no raw event (a silent stream)."""
        if step is None:
            if st.step_span is not None and not st.step_end:
                return
            step = (-1 if st.step is None else st.step) + 1
        elif st.step_span is not None and step == st.step:
            return
        self._open_step(st, step, now)
        st.chat_last = now

    def _close_step(self, st: TracedRun, end: int, result: RunnerResult[object] | None) -> None:
        span = st.step_span
        if span is None:
            return
        final = result is not None and not st.step_end
        status = st.step_status
        if final and result is not None:
            status = result.status or "error"
            if status == "success":
                span.set_attribute("treadle.step.final", True)
                if st.chat_last:  # what follows the answer is the response span's
                    end = st.chat_last
        end = max(st.step_end or end, st.step_start)
        if st.chat_last:
            self._chat_span(st, result)
        if status:
            span.set_attribute("treadle.step.status", status)
        if final and status not in ("success", "max_steps") and result is not None and result.error:
            span.set_status(self._Status(self._ERROR, self._error_text(result.error, st)))
        span.end(end_time=end)
        st.prev_end = end
        st.last = max(st.last, end)
        st.step_span = None
        st.step_ctx = None

    def _chat_span(self, st: TracedRun, result: RunnerResult[object] | None) -> None:
        if not st.chat_ran:
            self._determined_span(st)
            return
        attrs = dict(st.chat_base)
        if st.step is not None:
            attrs["treadle.step"] = st.step
        usage = st.chat_usage if st.chat_usage is not None else st.step_usage
        in_tokens = out_tokens = None
        if usage is not None:
            in_tokens, out_tokens = usage.input_tokens, usage.output_tokens
        elif result is not None:
            # the final step has no step event: its usage is what the run's total does not explain
            in_tokens = max(0, result.usage.input_tokens - st.in_acc)
            out_tokens = max(0, result.usage.output_tokens - st.out_acc)
            if not in_tokens and not out_tokens:
                in_tokens = out_tokens = None
        if in_tokens is not None and out_tokens is not None:
            attrs["gen_ai.usage.input_tokens"] = in_tokens
            attrs["gen_ai.usage.output_tokens"] = out_tokens
        if st.response_model:
            attrs["gen_ai.response.model"] = st.response_model
        if st.chat_text is not None and st.chat_first:
            attrs["gen_ai.response.time_to_first_chunk"] = (st.chat_first - st.step_start) / 1e9
        replied = bool(st.chat_calls) or st.chat_bad_text is not None or bool(st.chat_text)
        if replied:  # (a failed model call has no reply, so no finish reason)
            reason = finish_reason(st.chat_finish, st.chat_calls, st.chat_error)
            attrs["gen_ai.response.finish_reasons"] = [reason]
            if self.include_content:
                parts: list[Part] = []
                if st.chat_calls:
                    parts = output_parts(st.chat_calls)
                elif st.chat_bad_text is not None:
                    parts = [{"type": "text", "content": st.chat_bad_text}]
                elif st.chat_text:
                    parts = [{"type": "text", "content": "".join(st.chat_text)}]
                attrs["gen_ai.output.messages"] = self._json(
                    [{"role": "assistant", "parts": parts, "finish_reason": reason}], st)
                # what Phoenix shows as the span's output (else it makes one of gen_ai.response.model)
                attrs["output.value"], attrs["output.mime_type"] = self._reply_value(st)
        if self.include_content and st.messages is not None:
            attrs["gen_ai.input.messages"] = st.messages
        span = self._tracer.start_span(st.chat_name, context=st.step_ctx, kind=self._CLIENT,
                                       start_time=st.step_start, attributes=attrs)
        if st.chat_error:
            span.set_attribute("error.type", error_kind(st.chat_error))
            span.set_status(self._Status(self._ERROR, self._error_text(st.chat_error, st)))
        span.end(end_time=max(st.chat_last, st.step_start))

    def _reply_value(self, st: TracedRun) -> tuple[str, str]:
        """The reply as one string and its MIME type: the final answer (text, or JSON when it is
        data), else the tool calls as JSON."""
        calls = st.chat_calls
        if calls:
            if len(calls) == 1 and calls[0].is_final:
                answer = calls[0].final_answer
                return self._text(answer, st), "text/plain" if isinstance(answer, str) else _JSON
            return self._json([{"name": p["name"], "arguments": p["arguments"]}
                               for p in output_parts(calls) if p["type"] == "tool_call"], st), _JSON
        text = st.chat_bad_text if st.chat_bad_text is not None else "".join(st.chat_text or ())
        return self._clean(text, st), "text/plain"

    def _determined_span(self, st: TracedRun) -> None:
        """A reply no model ran for (the request admitted one reply: the local model's grammar
        determined it): a ``determined_reply`` span, not a ``chat`` span, and no tokens."""
        attrs: Attributes = {"treadle.run_id": st.run_id, "treadle.model_ran": False,
                             "openinference.span.kind": "CHAIN"}
        if st.step is not None:
            attrs["treadle.step"] = st.step
        if self.include_content and (st.chat_calls or st.chat_text):
            attrs["output.value"], attrs["output.mime_type"] = self._reply_value(st)
        if st.step_span is not None:
            st.step_span.set_attribute("treadle.model_ran", False)
        span = self._tracer.start_span("determined_reply", context=st.step_ctx, start_time=st.step_start,
                                       attributes=attrs)
        if st.chat_error:
            span.set_attribute("error.type", error_kind(st.chat_error))
            span.set_status(self._Status(self._ERROR, self._error_text(st.chat_error, st)))
        span.end(end_time=max(st.chat_last, st.step_start))

    def _step_complete(self, st: TracedRun, item: RunItem) -> None:
        out: object = item.data
        if not isinstance(out, StepOutput):
            return
        end = ns(item.created_at)
        self._ensure_step(st, end, out.step)
        st.step_end = st.last = end
        usage = out.usage
        if usage is not None and st.step_usage is None:
            st.step_usage = usage
            st.in_acc += usage.input_tokens
            st.out_acc += usage.output_tokens
        status = out.status
        if st.step_status is None or (st.step_status == "success" and status != "success"):
            st.step_status = status
        if out.function is None and status == "error" and self.include_content and out.observation \
                and st.step_span is not None:
            st.step_span.add_event("treadle.step.error", {"message": self._text(out.observation, st)},
                                   timestamp=end)

    def _cancel_received(self, st: TracedRun, item: RunItem) -> None:
        st.span.add_event(ev.CANCEL_RECEIVED, timestamp=ns(item.created_at))

    def _cancelled(self, st: TracedRun, item: RunItem) -> None:
        st.span.add_event(ev.CANCELLED, timestamp=ns(item.created_at))

