"""treadle: a fast, durable agent runtime.

``Agent`` (model + tools + max_steps + answer type) driven by a ``Runner`` with three
faces over one loop: ``call`` (sync), ``acall`` (async) and ``astream`` (typed events).
"""

from __future__ import annotations

from .agent import Agent
from .errors import (
    AlreadyDecidedError,
    AnswerConversionError,
    JournalConflictError,
    JournalError,
    ModelAuthenticationError,
    ModelBadRequestError,
    ModelConnectionError,
    ModelContextTooLongError,
    ModelError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelRetry,
    ModelServerError,
    ModelTimeoutError,
    OutputParseError,
    PlugError,
    RunCancelledError,
    RunLeasedError,
    RunOwnershipLostError,
    ToolError,
    TreadleError,
    UserError,
)
from .events import (
    FinalOutputItem,
    FunctionRequest,
    QueueCompleteSentinel,
    RawResponsesStreamEvent,
    RunItem,
    RunItemStreamEvent,
    StepRunItem,
    StreamEvent,
    ToolCallActivityRunItem,
    ToolCallPermissionRequest,
    ToolCallRunItem,
    ToolOutputRunItem,
)
from .memory import ConversationMemory
from .models import ModelClient, ModelDelta, ModelRequest, ModelResponse, ScriptedModel
from .permissions import ApprovalOutcome, ApprovalResponse, PermissionManager
from .planner import Planner
from .protocols import (
    AdalFlowClient,
    EventSink,
    MemoryProtocol,
    MemoryStore,
    PermissionManagerProtocol,
    RunObserver,
    RunStore,
    SeedPlanner,
    SeedToolManager,
    StreamingModelClient,
    Toolset,
)
from .runner import Runner
from .streaming import RunnerStreamingResult
from .tools import FunctionTool, ToolManager, tool
from .types import (
    AssistantResponse,
    Function,
    FunctionDefinition,
    FunctionOutput,
    GeneratorOutput,
    ModelType,
    RunContext,
    RunnerResult,
    StepOutput,
    ToolOutput,
    Usage,
    UserQuery,
)
from .usage import UsageLimits

__version__ = "0.1.0"

__all__ = [
    "Agent", "AlreadyDecidedError", "AnswerConversionError", "JournalConflictError", "JournalError",
    "RunLeasedError", "RunOwnershipLostError", "ApprovalOutcome", "ApprovalResponse", "AssistantResponse",
    "ConversationMemory", "FinalOutputItem", "Function", "FunctionDefinition", "FunctionOutput",
    "FunctionRequest", "FunctionTool", "GeneratorOutput", "ModelAuthenticationError", "ModelBadRequestError",
    "ModelClient", "ModelConnectionError", "ModelContextTooLongError", "ModelDelta", "ModelError",
    "ModelNotFoundError", "ModelRateLimitError", "ModelRequest", "ModelResponse", "ModelRetry", "ModelType",
    "ModelServerError", "ModelTimeoutError", "OutputParseError", "PermissionManager", "Planner",
    "QueueCompleteSentinel", "RawResponsesStreamEvent", "RunCancelledError", "RunContext", "RunItem",
    "RunItemStreamEvent", "Runner", "RunnerResult", "RunnerStreamingResult", "ScriptedModel", "StepOutput",
    "StepRunItem", "StreamEvent", "ToolCallActivityRunItem", "ToolCallPermissionRequest", "ToolCallRunItem",
    "ToolError", "ToolManager", "ToolOutput", "ToolOutputRunItem", "TreadleError", "Usage", "UserError",
    "UsageLimits", "UserQuery", "__version__", "tool",
    # the plug points' protocols (treadle.protocols)
    "AdalFlowClient", "EventSink", "MemoryProtocol", "MemoryStore", "PermissionManagerProtocol", "PlugError",
    "RunObserver", "RunStore", "SeedPlanner", "SeedToolManager", "StreamingModelClient", "Toolset",
]
