"""What an MCP host gets from treadle: agents, plain tools, resources, prompts and
completions, served by ``treadle mcp serve module:app`` (stdio) and ``/mcp`` of
``treadle serve module:app`` (streamable HTTP). See docs/mcp-serve.md.

An ``MCPApp`` is built in Python and holds no connection: the MCP face
(``treadle.server.mcp``) reads it. Agents and tools both run as journaled runs of the
server (a tool as a one-call run), so a served tool call is seen by the web UI and the
HTTP API, and its approval and its questions to the host (``ask_host``) wait in the
journal like an agent's.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

from ..agent import Agent
from ..errors import UserError
from ..events import ToolCallActivityRunItem
from ..types import ToolOutput
from .mcp_tools import HostAnswer, ask_host, sample_host

if TYPE_CHECKING:
    import mcp_types as types
    from pydantic import JsonValue

    from ..tools.function_tool import FunctionTool

__all__ = ["Completer", "HostAnswer", "HubAgents", "LogLevel", "MCPApp", "Prompt", "PromptArgument", "Resource",
           "as_app", "ask_host", "content", "log", "progress", "sample_host"]

LogLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
Completer = Union[Sequence[str], Callable[[str], Sequence[str]]]
"""The values of one argument: a list (those starting with what was typed are offered), or a
function of what was typed returning the values to offer."""

ResourceBody = Union[str, bytes]
ResourceReader = Callable[..., Union[ResourceBody, Awaitable[ResourceBody]]]
PromptBody = Union[str, Sequence["str | types.ContentBlock | types.PromptMessage"]]
PromptRenderer = Callable[..., Union[PromptBody, Awaitable[PromptBody]]]
R = TypeVar("R", bound=ResourceReader)
P = TypeVar("P", bound=PromptRenderer)
PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TOOL_AGENT = "tool:"  # the prefix of the run-hub name of a served tool's one-call agent


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource: static (``uri`` without ``{name}`` parts) or a template whose parts are
    the reader's keyword arguments. The reader returns text (``str``) or bytes (a blob)."""

    uri: str
    read: ResourceReader
    name: str
    description: str
    mime_type: str = "text/plain"
    complete: Mapping[str, Completer] = field(default_factory=dict)

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.uri)

    def match(self, uri: str) -> dict[str, str] | None:
        """The template's parts in ``uri`` (``{}`` for the static resource itself); None: not this one."""
        if not self.params:
            return {} if uri == self.uri else None
        pattern = "".join(f"(?P<{p}>[^/]+)" if p else re.escape(text)
                          for text, p in _pieces(self.uri))
        m = re.fullmatch(pattern, uri)
        return dict(m.groupdict()) if m else None


def _pieces(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    at = 0
    for m in PARAM.finditer(template):
        out.append((template[at:m.start()], ""))
        out.append(("", m.group(1)))
        at = m.end()
    out.append((template[at:], ""))
    return [p for p in out if p[0] or p[1]]


@dataclass(frozen=True, slots=True)
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt: ``render(**arguments)`` returns its text (one user message) or its messages
    (text, content blocks, or ``PromptMessage``; a bare one is a user message)."""

    name: str
    description: str
    render: PromptRenderer
    arguments: tuple[PromptArgument, ...] = ()
    complete: Mapping[str, Completer] = field(default_factory=dict)


class MCPApp:
    """Agents, tools, resources and prompts served together over MCP.

    Args:
        name: the server's name in the handshake.
        agents: agents (or ``{name: agent}``); each is a tool whose call runs it.
        tools: treadle tools (``@tool`` functions, ``FunctionTool``), each a tool of its own.
        instructions: what the host is told about the server (default: a line per agent).
        agent_prompts: offer each agent's instructions as a prompt named after the agent.
    """

    def __init__(self, name: str = "treadle", *, agents: Sequence[Agent[Any]] | Mapping[str, Agent[Any]] = (),
                 tools: Sequence[FunctionTool] = (), instructions: str | None = None,
                 agent_prompts: bool = True) -> None:
        self.name = name
        self.instructions = instructions
        self.agents: dict[str, Agent[Any]] = (dict(agents) if isinstance(agents, Mapping)
                                                 else {a.name: a for a in agents})
        self.tools: dict[str, FunctionTool] = {}
        for t in tools:
            self.add_tool(t)
        self.resources: list[Resource] = []
        self.prompts: dict[str, Prompt] = {}
        if agent_prompts:
            for agent_name, agent in self.agents.items():
                if agent.instructions:
                    self.add_prompt(Prompt(agent_name, f"The instructions of the agent {agent_name!r}.",
                                           _constant(agent.instructions)))

    # ------------------------------------------------------------------ building
    def add_tool(self, tool: FunctionTool) -> None:
        if tool.name in self.tools or tool.name in self.agents:
            raise UserError(f"two tools named {tool.name!r}: a served tool's name must be unique")
        self.tools[tool.name] = tool

    def add_resource(self, resource: Resource) -> None:
        if any(r.uri == resource.uri for r in self.resources):
            raise UserError(f"two resources at {resource.uri!r}")
        self.resources.append(resource)

    def add_prompt(self, prompt: Prompt) -> None:
        self.prompts[prompt.name] = prompt

    def resource(self, uri: str, *, name: str | None = None, description: str | None = None,
                 mime_type: str = "text/plain", complete: Mapping[str, Completer] | None = None) -> Callable[[R], R]:
        """Decorate the reader of the resource at ``uri`` (``{part}``s make it a template)."""
        def decorate(fn: R) -> R:
            params = PARAM.findall(uri)
            names = set(inspect.signature(fn).parameters)
            if set(params) != names:
                raise UserError(f"the reader of {uri!r} takes {sorted(names)}: it must take its parts {params}")
            self.add_resource(Resource(uri, fn, name or fn.__name__, description or _doc(fn), mime_type,
                                       dict(complete or {})))
            return fn
        return decorate

    def prompt(self, name: str | None = None, *, description: str | None = None,
               complete: Mapping[str, Completer] | None = None) -> Callable[[P], P]:
        """Decorate a prompt's renderer; its parameters are the prompt's arguments (those
        without a default are required; ``Args:`` lines of the docstring describe them)."""
        def decorate(fn: P) -> P:
            docs = _arg_docs(fn)
            args = tuple(PromptArgument(p.name, docs.get(p.name), p.default is inspect.Parameter.empty)
                         for p in inspect.signature(fn).parameters.values())
            self.add_prompt(Prompt(name or fn.__name__, description or _doc(fn), fn, args, dict(complete or {})))
            return fn
        return decorate

    # ------------------------------------------------------------------ for the run hub
    def hub_agents(self) -> HubAgents:
        """The agents the server's run hub runs: the agents, and a one-call agent per tool."""
        return HubAgents(self)


class HubAgents(dict[str, Agent[Any]]):
    """The run hub's agents of an app — its agents and a one-call agent per tool, by name, as
    ``treadle.server.load_agents`` returns agents — with the app itself (``app``), which the
    MCP face serves."""

    def __init__(self, app: MCPApp) -> None:
        super().__init__(app.agents)
        for tool_name, t in app.tools.items():
            self[TOOL_AGENT + tool_name] = _one_call_agent(t)
        self.app = app


def as_app(agents: Mapping[str, Agent[Any]]) -> MCPApp:
    """The MCP app of the run hub's agents: the app they came from, else one of the agents."""
    return agents.app if isinstance(agents, HubAgents) else MCPApp(agents=agents, agent_prompts=False)


# ---------------------------------------------------------------------- what a served tool yields or returns
def content(*blocks: types.ContentBlock, observation: str | None = None) -> ToolOutput:
    """A tool's result as MCP content blocks (images, audio, embedded resources, text): the
    host gets the blocks; an agent calling the tool reads ``observation`` (default: the text
    blocks, and a reference to the others)."""
    from mcp_types import TextContent  # the mcp extra: whoever builds content blocks has it

    dumped: list[JsonValue] = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]
    if observation is None:
        observation = "\n".join(b.text if isinstance(b, TextContent) else f"[{b.type} content]" for b in blocks)
    return ToolOutput(output=observation, observation=observation, display=observation,
                      metadata={"content": dumped})


def progress(done: float, total: float | None = None, message: str | None = None) -> ToolCallActivityRunItem:
    """Yield this from a generator tool: a progress notification to the host."""
    data: dict[str, JsonValue] = {"progress": done, "total": total}
    if message:
        data["message"] = message
    return ToolCallActivityRunItem(data=data)


def log(level: LogLevel, data: JsonValue, logger: str | None = None) -> ToolCallActivityRunItem:
    """Yield this from a generator tool: a log message (``notifications/message``) to the host."""
    return ToolCallActivityRunItem(data={"log": level, "data": data, "logger": logger})


# ---------------------------------------------------------------------- helpers
def _constant(text: str) -> PromptRenderer:
    def render() -> str:
        return text
    return render


def _doc(fn: Callable[..., object]) -> str:
    return (inspect.getdoc(fn) or fn.__name__).split("\n\n")[0].strip()


def _arg_docs(fn: Callable[..., object]) -> dict[str, str]:
    doc = inspect.getdoc(fn) or ""
    _, _, args = doc.partition("Args:")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):\s*(.+)$", args, re.M)}


def _one_call_agent(t: FunctionTool) -> Agent[Any]:
    """An agent whose model calls ``t`` once with the run's input (the call's JSON arguments)
    and finishes with what it returned: a tool call that is a journaled run."""
    from ..models.scripted import ScriptedModel
    from .mcp_tools import one_call_reply

    return Agent(name=TOOL_AGENT + t.name, tools=[t], model=ScriptedModel([one_call_reply(t.name)], repeat_last=True),
                 max_steps=2, instructions=t.description)
