"""treadle: a fast, durable agent runtime.

``Agent`` (model + tools + max_steps + answer type) driven by a ``Runner`` with three
faces over one loop: ``call`` (sync), ``acall`` (async) and ``astream`` (typed events).
"""

from __future__ import annotations

from .agent import Agent
from .compaction import ClearToolResults, Compaction, CompactionInfo, SlidingWindow, Summarize
from .errors import (
    AlreadyDecidedError,
    AnswerConversionError,
    JournalConflictError,
    JournalError,
    MaxStepsExceeded,
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
    RunFailedError,
    RunLeasedError,
    RunOwnershipLostError,
    RunSuspendedError,
    ToolError,
    TreadleError,
    UnknownArgumentError,
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
    EventSink,
    MemoryProtocol,
    MemoryStore,
    PermissionManagerProtocol,
    RunObserver,
    RunStore,
    StreamingModelClient,
    Toolset,
)
from .runner import Runner
from .streaming import RunnerStreamingResult
from .tools import FunctionTool, ToolManager, tool
from .types import (
    Function,
    FunctionDefinition,
    FunctionOutput,
    RunContext,
    RunnerResult,
    StepOutput,
    ToolOutput,
    Usage,
)
from .usage import UsageLimits

__version__ = "0.1.0"

__all__ = [
    "Agent", "AlreadyDecidedError", "AnswerConversionError", "JournalConflictError", "JournalError",
    "MaxStepsExceeded", "RunFailedError", "RunSuspendedError",
    "RunLeasedError", "RunOwnershipLostError", "ApprovalOutcome", "ApprovalResponse",
    "ConversationMemory", "FinalOutputItem", "Function", "FunctionDefinition", "FunctionOutput",
    "FunctionRequest", "FunctionTool", "ModelAuthenticationError", "ModelBadRequestError",
    "ModelClient", "ModelConnectionError", "ModelContextTooLongError", "ModelDelta", "ModelError",
    "ModelNotFoundError", "ModelRateLimitError", "ModelRequest", "ModelResponse", "ModelRetry",
    "ModelServerError", "ModelTimeoutError", "OutputParseError", "PermissionManager", "Planner",
    "QueueCompleteSentinel", "RawResponsesStreamEvent", "RunCancelledError", "RunContext", "RunItem",
    "RunItemStreamEvent", "Runner", "RunnerResult", "RunnerStreamingResult", "ScriptedModel", "StepOutput",
    "StepRunItem", "StreamEvent", "ToolCallActivityRunItem", "ToolCallPermissionRequest", "ToolCallRunItem",
    "ToolError", "ToolManager", "ToolOutput", "ToolOutputRunItem", "TreadleError", "Usage", "UserError",
    "UsageLimits", "UnknownArgumentError", "__version__", "tool",
    # context compaction (treadle.compaction)
    "ClearToolResults", "Compaction", "CompactionInfo", "SlidingWindow", "Summarize",
    # the plug points' protocols (treadle.protocols)
    "EventSink", "MemoryProtocol", "MemoryStore", "PermissionManagerProtocol", "PlugError",
    "RunObserver", "RunStore", "StreamingModelClient", "Toolset",
]

# AdalFlow's own names live in treadle.compat; importing them from treadle still works, with a warning
_MOVED = frozenset({"AdalFlowClient", "AssistantResponse", "GeneratorOutput", "ModelType", "SeedPlanner",
                    "SeedToolManager", "UserQuery"})


def __getattr__(name: str) -> object:
    if name in _MOVED:
        import warnings

        from . import compat

        warnings.warn(f"treadle.{name} is AdalFlow's and moved to treadle.compat: "
                      f"from treadle.compat import {name}", DeprecationWarning, stacklevel=2)
        return getattr(compat, name)
    raise AttributeError(f"module 'treadle' has no attribute {name!r}")
