"""What went wrong, typed: the HTTP errors a Streamable HTTP server answered with, a failed OAuth
sign-in, a session the server forgot (a part of ``treadle.tools.mcp``)."""

from __future__ import annotations

import mcp.types as mcp_types

from mcp import ClientSession, MCPError

from ._mcp_results import MCPAuthError, MCPServerError, _HTTPError, describe_error, http_error

__all__ = ["HTTPFailures"]


class HTTPFailures:
    """Mixin of ``MCPServer``: the HTTP errors of its connections (the SDK turns them into JSON-RPC
    errors without the status), read back to type an error and to see a forgotten session."""

    name: str
    _session: ClientSession | None
    _http_errors: list[_HTTPError]
    _http_seq: int
    _session_epoch: int

    def _drop(self, session: ClientSession) -> None:
        raise NotImplementedError

    # -- HTTP failures (the Streamable HTTP transport reports its responses' statuses here)
    def _note_http_error(self, status: int, method: str | None, had_session: bool,
                         www_authenticate: str | None) -> None:
        self._http_seq += 1
        self._http_errors.append(_HTTPError(self._http_seq, self._session_epoch, status, method, had_session,
                                            www_authenticate))
        del self._http_errors[:-20]

    def _http_mark(self) -> int:
        return self._http_seq

    def _http_errors_since(self, mark: int) -> list[_HTTPError]:
        return [e for e in self._http_errors if e.seq > mark and e.epoch == self._session_epoch]

    def _session_forgotten(self, session: ClientSession, mark: int) -> bool:
        """A 404 to a request that carried this session's id: the server no longer knows the session."""
        return session is self._session and any(e.status == 404 and e.had_session
                                                for e in self._http_errors_since(mark))

    def _error(self, session: ClientSession, e: MCPError, mark: int, doing: str) -> MCPServerError:
        """A typed, actionable error for a refused request (with the HTTP status behind it, if any)."""
        if e.code == mcp_types.CONNECTION_CLOSED:
            self._drop(session)
        return http_error(self.name, doing, e.message, self._http_errors_since(mark))

    def _connect_error(self, e: BaseException, mark: int) -> MCPServerError:
        """Why the connection failed, typed: a failed OAuth sign-in, an HTTP status, or the transport's error."""
        inner: BaseException = e
        while isinstance(getattr(inner, "exceptions", None), (list, tuple)) and inner.exceptions:  # type: ignore[attr-defined]
            inner = inner.exceptions[0]  # type: ignore[attr-defined]
        if type(inner).__name__ in ("OAuthFlowError", "OAuthTokenError", "OAuthRegistrationError"):
            return MCPAuthError(f"MCP server {self.name}: the OAuth sign-in failed: {inner} (check the MCPOAuth "
                                "settings: client id and secret, scopes, the authorization server)", 401)
        refused = [h for h in self._http_errors if h.seq > mark]
        if refused:
            return http_error(self.name, "refused the connection", describe_error(e), refused)
        return MCPServerError(f"cannot connect to MCP server {self.name}: {describe_error(e)}")
