"""The ASGI guard in front of the HTTP API: auth (bearer token or the UI's session cookie, with
its sign-in page), a Host check against DNS rebinding, JSON-only request bodies and a body size
limit (a part of ``treadle.server.app``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "LOGIN_PAGE", "LOOPBACK_HOSTS", "OPEN_PATHS", "Guard", "session_cookie"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
COOKIE = "treadle_session"
OPEN_PATHS = frozenset({"/health", "/login"})


class Guard:
    """Auth (bearer token or the UI's session cookie), a Host check against DNS rebinding,
    JSON-only request bodies (no form posts from other sites) and a body size limit."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: tuple[str, ...] | None,
                 max_body: int) -> None:
        self.app = app
        self.token = token
        self.cookie_value = session_cookie(token) if token else None
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed_hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.allowed_hosts:
                await _reply(send, 400, {"detail": f"host {host!r} is not allowed (see --allow-host)"})
                return
        path = scope["path"]
        if self.token and path not in OPEN_PATHS and not _open_card(path) and not self._authorized(headers):
            if path == "/" and scope["method"] == "GET":
                await _reply_html(send, 401, LOGIN_PAGE)
            else:
                await _reply(send, 401, {"detail": "missing or wrong bearer token"},
                             [(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await _reply(send, 413, {"detail": f"request body over {self.max_body} bytes"})
                return
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if length not in (None, "0") and ctype != "application/json":
                await _reply(send, 415, {"detail": "send the request body as application/json"})
                return
            body = await self._read_body(receive)
            if body is None:
                await _reply(send, 413, {"detail": f"request body over {self.max_body} bytes"})
                return
            if body and ctype != "application/json":  # a chunked body (no Content-Length)
                await _reply(send, 415, {"detail": "send the request body as application/json"})
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        token = self.token
        if not token:  # no token configured: nothing to check
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and self.cookie_value and hmac.compare_digest(v.encode(), self.cookie_value.encode()):
                return True
        return False

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body (a chunked one too), or None once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away: the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then http.disconnect, when it comes

    return replay


def _open_card(path: str) -> bool:
    """An A2A agent card (docs/a2a.md): public, it declares where the token goes."""
    if path == "/.well-known/agent-card.json":
        return True
    return path.startswith("/a2a/") and path.endswith("/.well-known/agent-card.json") and path.count("/") == 4


def session_cookie(token: str) -> str:
    return hmac.new(token.encode(), b"treadle-ui-session", hashlib.sha256).hexdigest()


async def _reply(send: Send, status: int, body: dict[str, str],
                 extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": data})


async def _reply_html(send: Send, status: int, html: str) -> None:
    data = html.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>treadle — sign in</title>
<style>body{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;
background:#f6f7f9;color:#1d2330}form{background:#fff;padding:2rem;border-radius:12px;
box-shadow:0 2px 12px #0001;display:grid;gap:.8rem;width:min(22rem,90vw)}input,button{font:inherit;
padding:.6rem;border-radius:8px;border:1px solid #c9ced8}button{background:#3b5bdb;color:#fff;border:0}
#err{color:#c92a2a;min-height:1.2em}</style></head><body>
<form id="f"><strong>treadle</strong><label for="t">Access token</label>
<input id="t" data-testid="login-token" type="password" autocomplete="current-password">
<button data-testid="login-submit">Sign in</button><div id="err"></div></form><script>
async function login(token){const r=await fetch('/login',{method:'POST',headers:{'Content-Type':'application/json'},
body:JSON.stringify({token})});if(r.ok){try{sessionStorage.setItem('treadle.token',token)}catch(e){}
location.replace('/');}else{document.getElementById('err').textContent='Wrong token.';}}
function fromHash(){const m=/token=([^&]+)/.exec(location.hash);if(m){history.replaceState(null,'',
location.pathname);login(decodeURIComponent(m[1]));}}fromHash();addEventListener('hashchange',fromHash);
document.getElementById('f').onsubmit=e=>{e.preventDefault();login(document.getElementById('t').value);};
</script></body></html>"""
