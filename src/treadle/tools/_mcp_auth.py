"""OAuth for MCP servers over Streamable HTTP, through the ``mcp`` SDK's auth support (a part of
``treadle.tools.mcp``).

``MCPOAuth`` is configuration; ``provider(url)`` builds the SDK's ``httpx2.Auth`` for one server:
protected-resource and authorization-server metadata discovery, dynamic client registration (or a
client-ID metadata document, or a pre-registered client), authorization code with PKCE, client
credentials (a secret or a signed JWT), token refresh and scope step-up are the SDK's. Tokens live in
the provider and its storage only: never in the headers treadle shows, the model's messages, the
events or the journal.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Union
from urllib.parse import parse_qs, urlparse

from ..errors import UserError

__all__ = ["MCPOAuth"]

logger = logging.getLogger("treadle.mcp")

Authorize = Callable[[str], Union[str, Awaitable[str]]]
"""``authorize(authorization_url) -> redirect_url``: show the user the authorization page and return
the URL the authorization server redirected the browser to (it carries ``code`` and ``state``)."""


class MCPOAuth:
    """OAuth 2.1 for an ``MCPServerStreamableHTTP`` (``auth=MCPOAuth(...)``).

    Args:
        grant: ``"authorization_code"`` (a user signs in; PKCE; default), ``"client_credentials"``
            (a machine: ``client_secret``, or ``private_key`` for a signed JWT) or
            ``"identity_assertion"`` (SEP-990: an ID-JAG from the enterprise IdP, ``assertion``).
        authorize: for the authorization code grant, ``authorize(url) -> redirect URL`` (sync or
            async). Default: open the URL in a browser and catch the redirect on ``redirect_uri``
            (a loopback port).
        client_name: the name registered with the authorization server (dynamic registration).
        redirect_uri: where the authorization server sends the browser back.
        scopes: scopes to ask for (default: what the server's metadata or challenge names).
        client_id, client_secret: a client registered beforehand (no dynamic registration).
        token_endpoint_auth_method: ``client_secret_basic``, ``client_secret_post`` or ``none``.
        client_metadata_url: an HTTPS URL of this client's metadata document, used as its client id
            where the authorization server accepts such documents.
        private_key, signing_algorithm: a PEM key to sign client-credentials JWT assertions.
        issuer: the authorization server the client credentials belong to (they go nowhere else).
        assertion: for ``identity_assertion``, ``assertion(audience, resource) -> ID-JAG`` (sync or async).
        token_file: keep tokens and the client registration in this JSON file (mode 0600) across
            processes; default: in memory, for the server object's life.
    """

    __module__ = "treadle.tools.mcp"

    def __init__(self, *, grant: Literal["authorization_code", "client_credentials",
                                         "identity_assertion"] = "authorization_code",
                 authorize: Authorize | None = None, client_name: str = "treadle",
                 redirect_uri: str = "http://127.0.0.1:33418/callback", scopes: list[str] | None = None,
                 client_id: str | None = None, client_secret: str | None = None,
                 token_endpoint_auth_method: str | None = None, client_metadata_url: str | None = None,
                 private_key: str | None = None, signing_algorithm: str = "ES256", issuer: str | None = None,
                 token_file: str | os.PathLike[str] | None = None,
                 assertion: Callable[[str, str], Union[str, Awaitable[str]]] | None = None) -> None:
        if grant not in ("authorization_code", "client_credentials", "identity_assertion"):
            raise UserError(f"grant must be 'authorization_code', 'client_credentials' or 'identity_assertion', "
                            f"not {grant!r}")
        if grant == "identity_assertion" and not (client_id and client_secret and issuer and assertion):
            raise UserError("the identity_assertion grant (SEP-990, enterprise-managed) needs client_id, "
                            "client_secret, issuer and assertion (a callable (audience, resource) -> the ID-JAG "
                            "from your IdP)")
        if grant == "client_credentials" and not client_id:
            raise UserError("the client_credentials grant needs client_id (and client_secret or private_key)")
        if grant == "client_credentials" and not (client_secret or private_key):
            raise UserError("the client_credentials grant needs client_secret or private_key")
        self.grant = grant
        self.authorize = authorize
        self.client_name = client_name
        self.redirect_uri = redirect_uri
        self.scopes = scopes
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_endpoint_auth_method = token_endpoint_auth_method
        self.client_metadata_url = client_metadata_url
        self.private_key = private_key
        self.signing_algorithm = signing_algorithm
        self.issuer = issuer
        self.token_file = Path(token_file) if token_file is not None else None
        self.assertion = assertion

    def __repr__(self) -> str:  # no secret in a repr (logs, errors)
        return f"MCPOAuth(grant={self.grant!r}, client_id={self.client_id!r})"

    def provider(self, server_url: str) -> Any:
        """The SDK's ``httpx2.Auth`` for the server at ``server_url``."""
        from mcp.client.auth import OAuthClientProvider
        from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

        storage = _FileStorage(self.token_file) if self.token_file is not None else _MemoryStorage()
        scope = " ".join(self.scopes) if self.scopes else None
        if self.grant == "identity_assertion":
            from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

            assertion = self.assertion
            assert assertion is not None and self.client_id and self.client_secret and self.issuer

            async def id_jag(audience: str, resource: str) -> str:
                value = assertion(audience, resource)
                return str(await value if inspect.isawaitable(value) else value)

            method_: Any = self.token_endpoint_auth_method or "client_secret_post"
            return IdentityAssertionOAuthProvider(server_url, storage, self.client_id, self.client_secret, self.issuer,
                                                  id_jag, scope=scope, token_endpoint_auth_method=method_)
        if self.grant == "client_credentials":
            from mcp.client.auth.extensions.client_credentials import (
                ClientCredentialsOAuthProvider,
                PrivateKeyJWTOAuthProvider,
                SignedJWTParameters,
            )

            assert self.client_id is not None
            if self.private_key:
                jwt = SignedJWTParameters(issuer=self.client_id, subject=self.client_id, signing_key=self.private_key,
                                          signing_algorithm=self.signing_algorithm)
                return _quiet(lambda: PrivateKeyJWTOAuthProvider(server_url, storage, self.client_id,  # type: ignore[arg-type]
                                                                 jwt.create_assertion_provider(), scope=scope,
                                                                 issuer=self.issuer))
            method: Any = self.token_endpoint_auth_method or "client_secret_basic"
            return _quiet(lambda: ClientCredentialsOAuthProvider(server_url, storage, self.client_id,  # type: ignore[arg-type]
                                                                 self.client_secret or "", method, scope=scope,
                                                                 issuer=self.issuer))
        metadata = OAuthClientMetadata.model_validate({
            "client_name": self.client_name, "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "scope": scope,
            **({"token_endpoint_auth_method": self.token_endpoint_auth_method}
               if self.token_endpoint_auth_method else {})})
        if self.client_id:  # registered beforehand: no dynamic registration
            storage.client_info = OAuthClientInformationFull.model_validate({
                "client_id": self.client_id, "client_secret": self.client_secret,
                "redirect_uris": [self.redirect_uri], "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": self.token_endpoint_auth_method
                or ("client_secret_basic" if self.client_secret else "none")})
        flow = _AuthorizationFlow(self.authorize or _browser_authorize(self.redirect_uri))
        return OAuthClientProvider(server_url, metadata, storage, redirect_handler=flow.redirect,
                                   callback_handler=flow.callback, client_metadata_url=self.client_metadata_url)


def _quiet(build: Callable[[], Any]) -> Any:
    """Build a provider; the SDK's deprecation warning for a missing issuer is a log line here."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider = build()
    for w in caught:
        logger.info("MCP OAuth: %s", w.message)
    return provider


class _AuthorizationFlow:
    """The SDK's redirect and callback handlers, from one ``authorize(url) -> redirect URL``."""

    def __init__(self, authorize: Authorize) -> None:
        self._authorize = authorize
        self._url: str | None = None

    async def redirect(self, url: str) -> None:
        self._url = url

    async def callback(self) -> Any:
        from mcp.shared.auth import AuthorizationCodeResult

        if self._url is None:
            raise UserError("the OAuth flow asked for the authorization code before sending the user anywhere")
        back = self._authorize(self._url)
        if inspect.isawaitable(back):
            back = await back
        query = parse_qs(urlparse(str(back)).query)
        if "error" in query:
            raise UserError(f"the authorization server refused: {query['error'][0]} "
                            f"{query.get('error_description', [''])[0]}".strip())
        if "code" not in query:
            raise UserError(f"the redirect after sign-in carries no authorization code: {urlparse(str(back)).path}")
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0],
                                       iss=query.get("iss", [None])[0])


def _browser_authorize(redirect_uri: str) -> Authorize:
    """Open the authorization page in a browser and catch the redirect on the loopback ``redirect_uri``."""

    async def authorize(url: str) -> str:
        return await asyncio.to_thread(_wait_for_redirect, url, redirect_uri)

    return authorize


def _wait_for_redirect(url: str, redirect_uri: str, timeout: float = 300.0) -> str:
    import http.server
    import webbrowser

    target = urlparse(redirect_uri)
    if target.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise UserError(f"the default OAuth sign-in catches the redirect on a loopback address; {redirect_uri} is "
                        "not one: pass authorize=... to MCPOAuth")
    got: list[str] = []
    done = threading.Event()

    class Catch(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            got.append(f"{redirect_uri.split('?')[0].rstrip('/')}{self.path[len(target.path.rstrip('/')):]}"
                       if self.path.startswith(target.path) else self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"Signed in: you can close this page.")
            done.set()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer((target.hostname or "127.0.0.1", target.port or 80), Catch)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        logger.warning("MCP OAuth: sign in at %s", url)
        webbrowser.open(url)
        if not done.wait(timeout):
            raise UserError(f"no sign-in within {timeout:g} s (the browser should come back to {redirect_uri})")
        return got[0]
    finally:
        httpd.shutdown()


class _MemoryStorage:
    """The SDK's ``TokenStorage`` in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


class _FileStorage(_MemoryStorage):
    """Tokens and the client registration in a JSON file only its owner can read."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

            data = json.loads(path.read_text())
            self.tokens = OAuthToken.model_validate(data["tokens"]) if data.get("tokens") else None
            self.client_info = (OAuthClientInformationFull.model_validate(data["client_info"])
                                if data.get("client_info") else None)

    def _save(self) -> None:
        data = {"tokens": self.tokens.model_dump(mode="json") if self.tokens else None,
                "client_info": self.client_info.model_dump(mode="json") if self.client_info else None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens
        self._save()

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info
        self._save()
