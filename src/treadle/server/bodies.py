"""The success bodies of the HTTP API, as the OpenAPI document declares them.

They name the fields a client can rely on, with their types; each allows more fields
(``additionalProperties``), so a newer server can add one without breaking older clients.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = ["ChildRun", "Health", "Info", "PendingApproval", "RunDetail", "RunList", "RunSummary", "Span", "Trace"]

OPEN = ConfigDict(extra="allow")


class Health(BaseModel):
    model_config = OPEN
    status: Literal["ok"]
    live_runs: int = Field(description="Runs this process is running now.")


class ToolInfo(BaseModel):
    model_config = OPEN
    name: str
    require_approval: bool


class AgentInfo(BaseModel):
    model_config = OPEN
    name: str
    model: Optional[str] = Field(description="The model's name (or model string).")
    tools: list[ToolInfo]


class Info(BaseModel):
    model_config = OPEN
    version: str
    agents: list[AgentInfo] = Field(description="The served agents; the first is the default of POST /runs.")
    auth: bool = Field(description="Whether the server asks for a bearer token.")


class PendingApproval(BaseModel):
    model_config = OPEN
    call_id: str
    tool_name: str
    kwargs: dict[str, JsonValue]
    thought: Optional[str] = None


class RunSummary(BaseModel):
    model_config = OPEN
    run_id: str
    agent: Optional[str]
    status: str = Field(description="running, waiting_for_approval, success, error, max_steps or cancelled.")
    model: Optional[str]
    steps: int
    usage: Optional[dict[str, JsonValue]] = Field(description="input_tokens, output_tokens, requests, tool_calls, "
                                                              "cost_usd.")
    created_at: Optional[float] = Field(description="Unix seconds.")
    updated_at: Optional[float]
    input: Optional[str]
    session_id: Optional[str]
    live: bool = Field(description="Whether this server process is running it now.")
    answer: JsonValue = Field(description="The final answer (any JSON) once the run succeeded.")
    error: Optional[str]
    error_type: Optional[str]
    duration_s: Optional[float]
    pending_approvals: list[PendingApproval]
    can_decide: bool = Field(False, description="Whether this server can take decisions on the run's approvals "
                                                "(it runs it, or can resume it once decided); when false, "
                                                "`cannot_decide_reason` says why and a decision gets 409.")
    cannot_decide_reason: Optional[str] = Field(None, description="Why this server cannot decide (null when it can).")
    parent_run_id: Optional[str] = Field(None, description="For a child run (an agent called as a tool or used "
                                                           "as a guardrail): the run whose call ran it.")
    parent_call_id: Optional[str] = Field(None, description='That call: "<step>:<call id>" for a tool call, '
                                                            '"guardrail:…" for a guardrail.')
    depth: int = Field(0, description="0 for a top-level run, 1 for its children, …")


class ChildRun(BaseModel):
    model_config = OPEN
    run_id: str
    call_id: Optional[str] = Field(description="The parent's tool call that ran it (the guardrail's call, if any).")
    parent_call_id: str = Field(description='As the child names it: "<step>:<call id>" or "guardrail:…".')
    step: int = Field(description="The parent's step (0-based).")
    kind: Literal["tool", "guardrail"]
    agent: Optional[str]
    status: str


class RunDetail(RunSummary):
    step_history: list[dict[str, JsonValue]] = Field(description="The finished steps (function, observation, usage…).")
    children: list[ChildRun] = Field(description="The child runs of its calls, in the order the calls started.")


class RunList(BaseModel):
    model_config = OPEN
    runs: list[RunSummary] = Field(description="Newest first.")


class Span(BaseModel):
    model_config = OPEN
    id: str
    parent: Optional[str]
    name: str
    kind: str = Field(description="run, step, model, tool, approval, guardrail or handoff (a child run's run "
                                  "span sits under the tool call, or guardrail, that ran it).")
    start: float
    end: Optional[float]
    status: str
    attributes: dict[str, JsonValue]


class Trace(BaseModel):
    model_config = OPEN
    run_id: str
    start: float
    end: Optional[float]
    spans: list[Span]
