"""``MCPServer``: one MCP session on an event loop of its own (a part of ``treadle.tools.mcp``)."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import weakref
from contextlib import AsyncExitStack
from typing import Any, AsyncIterator, Callable, Collection, Coroutine, TypeVar

import mcp.types as mcp_types

from mcp import ClientSession, MCPError

from ..errors import ToolTimeoutError, UserError
from ..events import ToolCallActivityRunItem
from ..types import ToolOutput
from ._mcp_callbacks import ServerRequests, negotiate, root_of
from ._mcp_failures import HTTPFailures
from ._mcp_pause import Asker, InFlight, current_flight
from ._mcp_requests import ElicitationHandler
from ._mcp_resources import ResourcesAndPrompts
from ._mcp_results import MCPServerError, _HTTPError, describe_error, result_to_tool_output
from ._mcp_tool import MCPTool

__all__ = ["MCPServer"]

logger = logging.getLogger("treadle.mcp")

T = TypeVar("T")

_CLIENT_INFO_NAME = "treadle"


# ---------------------------------------------------------------------------- the server

class _SessionLost(Exception):
    """The server answered 404 to this session's id: it restarted or expired the session."""


_live: weakref.WeakSet[MCPServer] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    for server in list(_live):
        try:
            server.close()
        except Exception:
            pass


class MCPServer(ServerRequests, HTTPFailures, ResourcesAndPrompts):
    """Base of the MCP server connections; see ``MCPServerStdio`` and ``MCPServerStreamableHTTP``.

    Args:
        include: only these MCP tool names become tools.
        exclude: these MCP tool names are left out.
        require_approval: ``True`` (every tool), ``False``, or a collection of MCP tool names
            whose calls a permission manager must approve.
        timeout: seconds one tool call may take (the ToolManager turns an overrun into an
            error observation; the request is cancelled on the server).
        connect_timeout: seconds to start the server and complete the MCP handshake.
        name: a label for logs and errors.
        prefix: put in front of every tool name (to keep two servers' tools apart).
        elicitation: answers the server's questions (``elicitation/create``) that come outside a
            run's tool call: ``handler(MCPElicitation) -> MCPElicitationAnswer | dict | bool | None``
            (sync or async). During a run's call a question pauses the run like an approval.
        sampling: what to do when the server asks for a model reply during a run's call: ``"approve"``
            (default: ask like an approval, then the run's own model answers), ``"allow"`` (the model
            answers without asking) or ``"deny"`` (not offered to the server).
        roots: folders (paths or ``file://`` URIs) the server may work in, offered as MCP roots
            (``None``: roots are not offered).
        protocol: ``"auto"`` (default: the 2026-07-28 revision when the server speaks it, else the
            2025 handshake) or ``"legacy"`` (always the 2025 ``initialize`` handshake).
    """

    __module__ = "treadle.tools.mcp"  # where it is imported from

    def __init__(self, *, include: Collection[str] | None = None, exclude: Collection[str] | None = None,
                 require_approval: bool | Collection[str] = False, timeout: float | None = 30.0,
                 connect_timeout: float = 30.0, name: str | None = None, prefix: str = "",
                 elicitation: ElicitationHandler | None = None, sampling: str = "approve",
                 roots: Collection[str] | None = None, protocol: str = "auto") -> None:
        self.include = set(include) if include is not None else None
        self.exclude = set(exclude or ())
        self.require_approval = require_approval if isinstance(require_approval, bool) else set(require_approval)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.name = name or self._default_name()
        self.prefix = prefix
        self.elicitation = elicitation
        if sampling not in ("approve", "allow", "deny"):
            raise UserError(f"sampling must be 'approve', 'allow' or 'deny', not {sampling!r}")
        self.sampling = sampling
        if protocol not in ("auto", "legacy"):
            raise UserError(f"protocol must be 'auto' (2026-07-28 when the server speaks it, else 2025) or "
                            f"'legacy' (the 2025 initialize handshake), not {protocol!r}")
        self.protocol = protocol
        self.roots = list(roots) if roots is not None else None
        self._roots = [root_of(r) for r in self.roots or ()]
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # the rest is only touched on the server's own loop
        self._session: ClientSession | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._tools: list[MCPTool] | None = None
        self._tools_stale = True
        self._http_errors: list[_HTTPError] = []
        self._in_flight: list[InFlight] = []  # tool calls on the server's loop (where questions go)
        self._http_seq = 0
        self._session_epoch = 0
        _live.add(self)

    # -- subclass hooks
    def _default_name(self) -> str:
        return "mcp"

    def _transport(self) -> Any:
        """An async context manager yielding the (read, write) streams of a new connection."""
        raise NotImplementedError

    # -- the server's own event loop, in a daemon thread
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"treadle-mcp-{self.name}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def _on_own_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    # -- connection (runs on the server's loop)
    async def _get_session(self) -> ClientSession:
        if self._session is not None:
            return self._session
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._session is not None:
                return self._session
            ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
            owner = asyncio.create_task(self._own_connection(ready))
            self._owner = owner
            try:
                return await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
            except asyncio.TimeoutError:
                # the error now; the transport's teardown (the SDK's terminate-then-kill of a subprocess)
                # goes on in the background. `ready` is settled here, so the owner leaves it alone.
                ready.cancel()
                owner.cancel()
                owner.add_done_callback(_reap)
                raise MCPServerError(f"MCP server {self.name} did not complete the handshake "
                                     f"within {self.connect_timeout:g} s") from None

    async def _own_connection(self, ready: asyncio.Future[ClientSession]) -> None:
        """Open the transport and session, hold them until told to stop, then close them (one task)."""
        stop = asyncio.Event()
        self._stop = stop
        mark = self._http_mark()
        session: ClientSession | None = None
        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(
                    read, write, message_handler=self._on_message, elicitation_callback=self._on_elicit,
                    sampling_callback=self._on_sampling if self.sampling != "deny" else None,
                    list_roots_callback=self._on_list_roots if self.roots is not None else None,
                    client_info=mcp_types.Implementation(name=_CLIENT_INFO_NAME, version=_version())))
                await negotiate(session, self.protocol)
                self._session_epoch += 1
                self._session = session
                self._tools_stale = True
                ready.set_result(session)
                watcher = asyncio.create_task(self._watch_tools(session))
                try:
                    await stop.wait()
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
        except BaseException as e:
            if not ready.done():
                ready.set_exception(self._connect_error(e, mark))
            elif not isinstance(e, asyncio.CancelledError):
                logger.warning("MCP server %s connection ended: %s", self.name, describe_error(e))
            if isinstance(e, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
        finally:
            if self._session is session:
                self._session = None
            if self._stop is stop:
                self._stop = None

    def _drop(self, session: ClientSession) -> None:
        """Forget a dead session and let its owner close the transport (reaping the subprocess)."""
        if self._session is session:
            self._session = None
            self._tools_stale = True
            if self._stop is not None:
                self._stop.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools_stale = True
        elif isinstance(message, Exception):
            logger.warning("MCP server %s transport error: %s", self.name, describe_error(message))

    async def _restart_session(self, session: ClientSession) -> None:
        logger.info("MCP server %s no longer knows its session (HTTP 404): starting a new one", self.name)
        self._drop(session)
        owner = self._owner
        if owner is not None and not owner.done():
            await asyncio.wait({owner}, timeout=10)

    async def _disconnect(self) -> None:
        owner = self._owner
        if self._stop is not None:
            self._stop.set()
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), 15)
            except asyncio.TimeoutError:  # pragma: no cover - the SDK bounds its own shutdown
                owner.cancel()
        self._owner = None

    # -- tools (runs on the server's loop)
    async def _list_on_loop(self) -> list[MCPTool]:
        for attempt in (1, 2):
            session = await self._get_session()
            if self._tools is not None and not self._tools_stale:
                return self._tools
            mark = self._http_mark()
            try:
                return await self._list_once(session)
            except _SessionLost:
                if attempt == 2:
                    break
                await self._restart_session(session)
            except MCPError as e:
                raise self._error(session, e, mark, "could not list its tools") from None
        raise MCPServerError(f"MCP server {self.name} forgot the new session at once (HTTP 404 again): "
                             "check that the URL reaches one server")

    async def _list_once(self, session: ClientSession) -> list[MCPTool]:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        mark = self._http_mark()
        try:
            while True:
                params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await asyncio.wait_for(session.list_tools(params=params), self.connect_timeout)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        except asyncio.TimeoutError:
            raise MCPServerError(f"MCP server {self.name} did not list its tools within "
                                 f"{self.connect_timeout:g} s") from None
        except MCPError:
            if self._session_forgotten(session, mark):
                raise _SessionLost() from None
            raise
        self._tools_stale = False
        self._tools = [self._make_tool(t) for t in listed if self._wanted(t.name) and self._callable(t)]
        return self._tools

    def _callable(self, tool: mcp_types.Tool) -> bool:
        """False (and a log line) for a tool treadle cannot call: one that runs only as an MCP task."""
        execution = getattr(tool, "execution", None)
        if execution is not None and execution.task_support == "required":
            logger.info("MCP server %s: tool %s is not offered to the model: it runs only as an MCP task "
                        "(execution.taskSupport 'required'), which treadle's client does not support", self.name,
                        tool.name)
            return False
        return True

    def _wanted(self, name: str) -> bool:
        return (self.include is None or name in self.include) and name not in self.exclude

    def _make_tool(self, tool: mcp_types.Tool) -> MCPTool:
        approval = self.require_approval if isinstance(self.require_approval, bool) \
            else tool.name in self.require_approval
        return MCPTool(self, tool, name=self.prefix + tool.name, require_approval=approval, timeout=self.timeout)

    async def _call_on_loop(self, name: str, arguments: dict[str, Any], on_progress: Callable[..., Any] | None,
                            call: InFlight) -> mcp_types.CallToolResult:
        self._in_flight.append(call)
        current_flight.set(call)  # this task's (the call's) own context
        try:
            return await self._call_with_retry(name, arguments, on_progress)
        finally:
            self._in_flight.remove(call)

    async def _call_with_retry(self, name: str, arguments: dict[str, Any],
                               on_progress: Callable[..., Any] | None) -> mcp_types.CallToolResult:
        for attempt in (1, 2):
            session = await self._get_session()
            mark = self._http_mark()
            try:
                return await self._call_once(session, name, arguments, on_progress)
            except MCPError as e:
                if attempt == 1 and self._session_forgotten(session, mark):
                    # the server restarted (or expired the session) and never saw this request: a new
                    # session, and the call once more (the spec: a 404 on a session id means start anew)
                    await self._restart_session(session)
                    continue
                if e.code == mcp_types.CONNECTION_CLOSED:
                    self._drop(session)
                    raise MCPServerError(f"MCP server {self.name} closed the connection during the call "
                                         f"to {name}") from None
                raise self._error(session, e, mark, f"refused the call to {name}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(self, session: ClientSession, name: str, arguments: dict[str, Any],
                         on_progress: Callable[..., Any] | None) -> mcp_types.CallToolResult:
        try:
            result = await session.call_tool(name, arguments, progress_callback=on_progress, allow_input_required=True)
            if isinstance(result, mcp_types.InputRequiredResult):  # 2026-07-28: the server needs input first
                result = await self._answer_input_required(session, name, arguments, on_progress, result)
            if not isinstance(result, mcp_types.CallToolResult):
                raise MCPServerError(f"MCP server {self.name} answered the call to {name} with a "
                                     f"{type(result).__name__}, not a tool result")
            return result
        except (asyncio.CancelledError, MCPServerError, MCPError):
            raise
        except Exception as e:
            # a write to a dead transport, a broken stream: this session is unusable
            self._drop(session)
            raise MCPServerError(
                f"MCP server {self.name} failed during the call to {name}: {describe_error(e)}") from None

    # -- calls from any loop
    async def _stream_call(self, name: str, arguments: dict[str, Any], ask: Asker | None = None) -> AsyncIterator[Any]:
        """Progress ``ToolCallActivityRunItem``s as they come, then the ``ToolOutput``; ``ask`` answers the
        questions the server asks during the call (a run's pause); a pause ends the call with ``RunSuspension``."""
        caller = asyncio.get_running_loop()
        flight = InFlight(tool=self.prefix + name, ask=ask)
        progress: asyncio.Queue[tuple[float, float | None, str | None]] = asyncio.Queue()

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            caller.call_soon_threadsafe(progress.put_nowait, (done, total, message))

        call = asyncio.wrap_future(self._submit(self._call_on_loop(name, arguments, on_progress, flight)))
        try:
            while not call.done():
                # `timeout` bounds the server's work: the time a question waits for its answer does not count
                wait = None if self.timeout is None else self.timeout - flight.working_time()
                if wait is not None and flight.asking_since is not None:
                    wait = max(wait, 0.5)  # look again once the answer is in
                if wait is not None and wait <= 0:  # (the request is cancelled on the way out)
                    raise ToolTimeoutError(f"MCP tool {self.prefix + name} timed out after {self.timeout:g} s")
                getter = asyncio.ensure_future(progress.get())
                try:
                    await asyncio.wait({call, getter}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter.done() and not getter.cancelled():
                    yield self._activity(name, *getter.result())
            while not progress.empty():
                yield self._activity(name, *progress.get_nowait())
            result = call.result()
            if flight.suspended is not None:
                raise flight.suspended
            out = result_to_tool_output(result, self.prefix + name, self.name)
            if flight.unanswered and out.status == "success":  # a server that reports a failed question as success
                note = f"[treadle: the server's question was not answered: {flight.unanswered}]"
                out.observation = f"{out.observation}\n{note}" if out.observation else note
                out.status = "error"
            yield out
        finally:
            if not call.done():
                call.cancel()  # cancels the request on the server's loop (and the SDK tells the server)

    def _activity(self, name: str, done: float, total: float | None, message: str | None) -> ToolCallActivityRunItem:
        data: dict[str, Any] = {"server": self.name, "tool": self.prefix + name, "progress": done, "total": total}
        if message:
            data["message"] = message
        return ToolCallActivityRunItem(data=data)

    # -- public API
    async def connect(self) -> None:
        """Start the server and complete the MCP handshake (otherwise done on first use)."""
        await asyncio.wrap_future(self._submit(self._get_session()))

    async def list_tools(self) -> list[MCPTool]:
        """The server's tools (after include/exclude) as treadle tools; re-listed after ``tools/list_changed``."""
        return await asyncio.wrap_future(self._submit(self._list_on_loop()))

    def tools(self) -> list[MCPTool]:
        """``list_tools`` for synchronous code (``Agent(tools=server.tools())``); connects on first use."""
        if self._on_own_loop():
            raise RuntimeError("MCPServer.tools() called from the server's own loop; await list_tools()")
        wait = self.connect_timeout * 2 + 5
        try:
            return self._submit(self._list_on_loop()).result(timeout=wait)
        except concurrent.futures.TimeoutError:
            raise MCPServerError(f"MCP server {self.name} did not list its tools within {wait:g} s") from None

    # the hook ToolManager.add expands: an object with treadle_tools() stands for its tools
    treadle_tools = tools

    @property
    def tools_changed(self) -> bool:
        """True after the server announced ``tools/list_changed`` (agents re-list at their next run)."""
        return self._tools is not None and self._tools_stale

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> ToolOutput:
        """Call one tool by its MCP name, outside an agent; bounded by ``timeout``."""

        async def run() -> ToolOutput:
            out: Any = None
            async for item in self._stream_call(name, dict(arguments or {})):
                out = item
            return out

        try:
            return await run()
        except ToolTimeoutError as e:
            raise MCPServerError(str(e)) from None

    @property
    def connected(self) -> bool:
        return self._session is not None

    def close(self) -> None:
        """Close the session and stop the server (the subprocess exits); a later use reconnects."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if self._on_own_loop():
            raise RuntimeError("MCPServer.close() called from the server's own loop")
        try:
            asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(timeout=20)
        except Exception as e:  # pragma: no cover - best effort at shutdown
            logger.warning("MCP server %s did not close cleanly: %s", self.name, describe_error(e))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
        self._session = None
        self._owner = self._stop = self._connect_lock = None
        self._tools, self._tools_stale = None, True

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> MCPServer:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> MCPServer:
        self._submit(self._get_session()).result(timeout=self.connect_timeout + 5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, connected={self.connected})"


def _reap(task: asyncio.Task[Any]) -> None:
    """Read a finished background task's outcome (nothing is left unretrieved)."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("MCP connection ended with %s", describe_error(task.exception()))  # type: ignore[arg-type]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("treadle")
    except Exception:  # pragma: no cover
        return "0"
