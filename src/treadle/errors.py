"""Typed errors.

Model clients raise subclasses of :class:`ModelError`; the runner classifies them by
type (never by searching the message for "400" or "429"). ``retryable`` errors may be
retried by the client with backoff; once they escape the client they end the run, like
every other ``ModelError``. Tool-side problems (unknown tool, bad arguments, a tool that
raised or timed out) never end a run: they become an error observation for the model.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDecidedError",
    "AnswerConversionError",
    "GuardrailTripwireTriggered",
    "InputGuardrailTripwireTriggered",
    "JournalConflictError",
    "JournalError",
    "MaxStepsExceeded",
    "ModelAuthenticationError",
    "ModelBadRequestError",
    "ModelConnectionError",
    "ModelContextTooLongError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRateLimitError",
    "ModelResponseError",
    "ModelRetry",
    "ModelServerError",
    "ModelTimeoutError",
    "OutputGuardrailTripwireTriggered",
    "OutputParseError",
    "PlugError",
    "RunCancelledError",
    "RunFailedError",
    "RunSuspension",
    "RunLeasedError",
    "RunOwnershipLostError",
    "RunSuspendedError",
    "ScriptExhaustedError",
    "ToolArgumentsError",
    "ToolError",
    "ToolExecutionError",
    "ToolGuardrailTripwireTriggered",
    "ToolNotFoundError",
    "ToolRetriesExceededError",
    "ToolTimeoutError",
    "TreadleError",
    "UnknownArgumentError",
    "UsageLimitExceeded",
    "UserError",
]


class TreadleError(Exception):
    """Base class of every treadle error."""


class UserError(TreadleError, ValueError):
    """The library was used wrongly (bad configuration, bad arguments)."""


class UnknownArgumentError(UserError, TypeError):
    """A constructor or a run was given an argument it does not take (a typo, or an AdalFlow-only
    argument outside ``treadle.compat``). The message names the closest valid argument."""


class PlugError(UserError, TypeError):
    """An object given for a plug point (model, planner, memory, store, …) lacks methods its
    protocol needs (``treadle.protocols``). Raised when it is plugged in, not at the first step."""


# ----------------------------------------------------------------- model errors
class ModelError(TreadleError):
    """A model provider failed. Ends the run (after the client's own retries)."""

    retryable: bool = False

    def __init__(self, message: str = "", *, status_code: int | None = None, retry_after: float | None = None,
                 provider: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider = provider


class ModelAuthenticationError(ModelError):
    """Missing or invalid credentials (HTTP 401/403)."""


class ModelBadRequestError(ModelError):
    """The provider rejected the request (HTTP 400/422)."""


class ModelContextTooLongError(ModelBadRequestError):
    """The prompt does not fit the model's context window."""


class ModelNotFoundError(ModelError):
    """The model does not exist on this provider (HTTP 404)."""


class ModelConnectionError(ModelError):
    """The provider could not be reached."""

    retryable = True


class ModelTimeoutError(ModelError):
    """The provider did not answer in time."""

    retryable = True


class ModelRateLimitError(ModelError):
    """Too many requests (HTTP 429)."""

    retryable = True


class ModelServerError(ModelError):
    """The provider failed (HTTP 5xx)."""

    retryable = True


class ModelResponseError(ModelError):
    """The provider answered with something that is not a usable reply."""


class ScriptExhaustedError(ModelError):
    """A ScriptedModel was asked for more replies than it was given."""


# ----------------------------------------------------------------- recoverable
class OutputParseError(TreadleError):
    """The model's reply could not be turned into a Function. Recoverable."""


class AnswerConversionError(TreadleError):
    """The final answer does not fit the agent's answer type. Recoverable."""


class ToolError(TreadleError):
    """A tool call failed. Recoverable: the message becomes the observation."""


class ToolNotFoundError(ToolError):
    """The model called a tool that does not exist."""


class ToolArgumentsError(ToolError):
    """The model's arguments do not validate against the tool's schema."""


class ToolExecutionError(ToolError):
    """The tool raised an exception."""


class ToolTimeoutError(ToolError):
    """The tool did not finish within its timeout."""


class ToolRetriesExceededError(TreadleError):
    """A tool asked the model to retry more often than it allows. Ends the run."""


class UsageLimitExceeded(TreadleError):
    """A run went past one of its UsageLimits. Ends the run."""


class ModelRetry(Exception):
    """Raise inside a tool to ask the model to try again; the message is the observation.

    Bounded by the tool's ``max_retries``; past that the run ends with an error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunSuspension(Exception):
    """Raised through a tool call when the run must stop and wait (a decision nobody can give
    now): the tool layer lets it through instead of turning it into an error observation."""


class RunCancelledError(TreadleError):
    """The run was cancelled (status ``cancelled``); ``result`` carries the history so far."""

    def __init__(self, message: str = "run cancelled", result: object = None) -> None:
        super().__init__(message)
        self.result = result


class MaxStepsExceeded(TreadleError):
    """The run took its ``max_steps`` without a final answer (status ``max_steps``, this class's
    name as ``error_type``); ``result`` carries its steps."""

    def __init__(self, message: str = "no final answer within max_steps", result: object = None) -> None:
        super().__init__(message)
        self.result = result


class RunFailedError(TreadleError):
    """The run ended with an error (status ``error``): ``error_type`` names what ended it (a
    model error's class, ``UsageLimitExceeded``, a guardrail's tripwire, …); ``result`` carries
    its steps."""

    def __init__(self, message: str = "run failed", result: object = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.error_type = error_type


class RunSuspendedError(TreadleError):
    """The run stopped to wait for an approval (status ``waiting_for_approval``); it goes on
    when resumed after the decision. ``result`` carries its steps so far."""

    def __init__(self, message: str = "run waiting for approval", result: object = None) -> None:
        super().__init__(message)
        self.result = result


class JournalError(TreadleError):
    """The run store refused or failed a journal write."""


class JournalConflictError(JournalError):
    """An append collided with an entry already in the journal (same ``seq`` or key): the
    journal is never overwritten, so two writers of one run are refused, not mixed."""


class RunOwnershipLostError(JournalError):
    """This process no longer owns the run: its lease expired and another process took
    the run over (a higher epoch). The write was refused; this process stops the run."""


class RunLeasedError(UserError):
    """The run is owned by a live process (its lease has not expired): it cannot be
    resumed or decided from here now. ``owner`` and ``lease_until`` say who and until when."""

    def __init__(self, message: str, owner: str | None = None, lease_until: float | None = None) -> None:
        super().__init__(message)
        self.owner = owner
        self.lease_until = lease_until


class AlreadyDecidedError(UserError):
    """A decision for this pending tool call was already recorded: the first one wins."""


class GuardrailTripwireTriggered(TreadleError):
    """A guardrail's check failed and ended the run. ``guardrail`` is its name, ``info``
    whatever the check returned with its verdict. The run's result has status "error" and
    this class's name as ``error_type``."""

    def __init__(self, message: str, guardrail: str = "", info: object = None) -> None:
        super().__init__(message)
        self.guardrail = guardrail
        self.info = info


class InputGuardrailTripwireTriggered(GuardrailTripwireTriggered):
    """An input guardrail rejected the run's input: no tool ran, no answer was given."""


class OutputGuardrailTripwireTriggered(GuardrailTripwireTriggered):
    """An output guardrail rejected the final answer (after its retries, if any)."""


class ToolGuardrailTripwireTriggered(GuardrailTripwireTriggered):
    """A tool guardrail with ``halt=True`` rejected a call's arguments or its output."""
