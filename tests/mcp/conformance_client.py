"""The MCP client the official conformance suite launches: ``python conformance_client.py URL``.

It drives treadle's own client (``treadle.tools.mcp``) the way an agent would: connect, list
the tools, call them. The suite names the scenario in ``MCP_CONFORMANCE_SCENARIO`` and, for the
auth scenarios, gives credentials in ``MCP_CONFORMANCE_CONTEXT`` (JSON). Exit code 0 on success.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from treadle.tools.mcp import MCPElicitation, MCPElicitationAnswer, MCPOAuth, MCPServerStreamableHTTP

# the client-ID metadata document URL the suite's authorization servers accept (CIMD scenarios)
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def sign_in(url: str) -> str:
    """The user signs in at once: the suite's authorization endpoint redirects straight back."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            location = response.headers.get("Location")
    except urllib.error.HTTPError as e:  # the 302 itself (not followed)
        location = e.headers.get("Location")
    if not location:
        raise RuntimeError(f"the authorization endpoint did not redirect: {url}")
    return location


def _json(url: str, form: dict | None = None) -> dict:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
        return json.loads(response.read())


def enterprise_managed(url: str, context: dict) -> MCPOAuth:
    """SEP-990: the IdP exchanges the user's ID token for an ID-JAG (RFC 8693), the MCP server's
    authorization server takes the ID-JAG (jwt-bearer). The IdP half is the deployment's: done here."""
    parts = urllib.parse.urlparse(url)
    prm = _json(f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}")
    issuer = _json(prm["authorization_servers"][0].rstrip("/") + "/.well-known/oauth-authorization-server")["issuer"]

    def id_jag(audience: str, resource: str) -> str:
        return _json(context["idp_token_endpoint"], {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag", "audience": audience,
            "resource": resource, "subject_token": context["idp_id_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "client_id": context["idp_client_id"]})["access_token"]

    return MCPOAuth(grant="identity_assertion", client_id=context["client_id"], client_secret=context["client_secret"],
                    issuer=issuer, assertion=id_jag, token_endpoint_auth_method="client_secret_basic")


def oauth_for(scenario: str, context: dict, url: str) -> MCPOAuth | None:
    if not scenario.startswith("auth/"):
        return None
    if scenario == "auth/client-credentials-basic":
        return MCPOAuth(grant="client_credentials", client_id=context["client_id"],
                        client_secret=context["client_secret"])
    if scenario == "auth/client-credentials-jwt":
        return MCPOAuth(grant="client_credentials", client_id=context["client_id"],
                        private_key=context["private_key_pem"],
                        signing_algorithm=context.get("signing_algorithm") or "ES256")
    if scenario == "auth/cross-app-access-complete-flow":
        return enterprise_managed(url, context)
    if scenario == "auth/pre-registration":
        return MCPOAuth(authorize=sign_in, client_id=context["client_id"], client_secret=context["client_secret"],
                        redirect_uri="http://localhost:3000/callback")
    return MCPOAuth(authorize=sign_in, client_name="treadle-conformance", client_metadata_url=CLIENT_METADATA_URL,
                    redirect_uri="http://localhost:3000/callback")


def accept_with_defaults(question: MCPElicitation) -> MCPElicitationAnswer:
    """The user accepts the form without changing anything: treadle fills in the defaults."""
    return MCPElicitationAnswer.accept({})


async def main(url: str) -> None:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    options: dict = {"timeout": 20, "connect_timeout": 20, "elicitation": accept_with_defaults,
                     "auth": oauth_for(scenario, context, url)}
    server = MCPServerStreamableHTTP(url, **options)
    try:
        tools = await server.list_tools()
        print(f"{scenario}: tools {[t.name for t in tools]}")
        for tool in tools:
            args = {"a": 2, "b": 3} if tool.mcp_name == "add_numbers" else {}
            out = await server.call_tool(tool.mcp_name, args)
            print(f"{tool.mcp_name} -> {out.status}: {out.observation[:200]}")
    finally:
        await server.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
