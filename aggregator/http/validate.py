"""`/auth/validate`: the gateway's decision on one nginx passthrough request (nginx `auth_request`).

nginx sends the client's headers, `X-Mcp-Server` (whose location it is), `X-Original-Method`,
`X-Original-URI`, and the client's request body as this request's body (see nginx/README.md for
how the body gets there). The decision is the aggregated endpoint's, from the same scopes.yml:

* the caller needs a valid bearer token (else 401 with the RFC 9728 challenge);
* every request needs some rule for the server (server level); a GET stream or a DELETE needs no more;
* every JSON-RPC message in the body is checked on its own, so a batch with one forbidden
  element is refused whole: `tools/call` by method and tool, other methods by method; the
  protocol's own plumbing (`initialize`, `ping`, `server/discover`, notifications, responses)
  needs only server-level access;
* 2026-07-28 `Mcp-Method`/`Mcp-Name` headers must agree with the body;
* the body is held to the request limits (size, nesting depth, batch length, token count) before
  it is parsed; a body over them cannot be authorised.

Allowed: 200 with the identity headers of mcp-gateway-registry (`X-User`, `X-Scopes`, ...), which
nginx forwards to servers configured for them, and, when nginx caches allows (`X-Mcp-Cache-Ttl`),
`X-Accel-Expires`: how long nginx may reuse it, never past the token's `exp` and only under the
generation nginx keys it with (`aggregator.nginx.cache`). Refused: 403 saying what was missing,
with the scopes that would grant it; `X-Mcp-Auth-Body` carries the JSON body nginx shows the
client; `X-Accel-Expires: 0`, so nginx never keeps a refusal. Only 200, 401 and 403 are ever
answered: nginx turns any other status of `auth_request` into a 500.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.errors import AccessDeniedError, AuthenticationError
from aggregator.http.auth import METADATA_PATH, PublicOrigin, authenticate, challenge
from aggregator.nginx.cache import CacheMarks
from aggregator.policy.limits import BodyInspector, mark_refusal_logged, printable, read_bounded
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.policy.scopes import Policy
from aggregator.policy.tokens import TokenVerifier
from aggregator.server.guard import Guard
from aggregator.upstreams.identity import identity_values

logger = logging.getLogger(__name__)

VALIDATE_PATH = "/auth/validate"
PROTOCOL_METHODS = frozenset({"initialize", "ping", "server/discover"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # RFC 3986 path characters: what nginx forwarded stays as it was


def may_reach(policy: Policy, principal: Principal, server: str) -> bool:
    """Server-level access: some scope of the principal has a rule for `server`."""
    if principal.unrestricted:
        return True
    return any(
        rule.server == server or ("*" in rule.server and fnmatch.fnmatchcase(server, rule.server))
        for scope in policy.scopes_of(principal)
        for rule in policy.file.scopes.get(scope, ())
    )


@dataclass(frozen=True, slots=True)
class Message:
    """One JSON-RPC request or notification of a POST body, reduced to what the policy looks at."""

    method: str
    tool: str | None
    where: str  # "" for a single message, "Batch element N: " inside a batch


def read_messages(body: bytes, headers: dict[str, str]) -> list[Message]:
    """The requests and notifications in a POST body (a batch is read element by element).

    Raises `AccessDeniedError` when the body is not JSON-RPC, or when 2026-07-28 `Mcp-Method`/
    `Mcp-Name` headers contradict it.
    """
    try:
        document = json.loads(body.decode("utf-8")) if body.strip() else None  # UTF-8 only, as MCP says
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        raise AccessDeniedError("The request body is not JSON, so it cannot be authorised.") from None
    except RecursionError:  # only when max_json_depth is set beyond what the parser can nest
        raise AccessDeniedError("The request body nests too deeply to be authorised.") from None
    if document is None:
        raise AccessDeniedError("A POST without a JSON-RPC body cannot be authorised.")
    batch = document if isinstance(document, list) else [document]
    if not batch:
        raise AccessDeniedError("An empty JSON-RPC batch cannot be authorised.")
    messages: list[Message] = []
    for position, message in enumerate(batch, start=1):
        where = f"Batch element {position}: " if isinstance(document, list) else ""
        if not isinstance(message, dict):
            raise AccessDeniedError(f"{where}a JSON-RPC message must be an object.")
        method = message.get("method")
        if method is None and "id" in message and ("result" in message or "error" in message):
            continue  # the client's answer to a request of the server's
        if not isinstance(method, str):
            raise AccessDeniedError(f"{where}a JSON-RPC message without a method cannot be authorised.")
        params = message.get("params")
        tool = params.get("name") if method == "tools/call" and isinstance(params, dict) else None
        if method == "tools/call" and (not isinstance(tool, str) or not tool):
            raise AccessDeniedError(f"{where}tools/call names no tool.")
        messages.append(Message(method, tool if isinstance(tool, str) else None, where))
    if not isinstance(document, list):
        _check_era_headers(headers, document)
    return messages


def check_messages(policy: Policy, principal: Principal, server: str, messages: list[Message]) -> None:
    """Raise `AccessDeniedError` naming the first message `principal` may not send to `server`."""
    for message in messages:
        _check_one(policy, principal, server, message.method, message.tool, message.where)


def _check_one(policy: Policy, principal: Principal, server: str, method: str, tool: str | None, where: str) -> None:
    who = principal.describe()
    if method in PROTOCOL_METHODS or method.startswith("notifications/"):
        return
    if tool is not None:
        if not policy.allows(principal, server, method, tool):
            message = f"{where}'{who}' may not call tool '{tool}' of server '{server}'."
            raise AccessDeniedError(message, _granting_scopes(policy, server, method, tool))
    elif not policy.allows(principal, server, method):
        message = f"{where}'{who}' may not use {method} on server '{server}'."
        raise AccessDeniedError(message, _granting_scopes(policy, server, method, None))


def _check_era_headers(headers: dict[str, str], message: dict[str, Any]) -> None:
    """2026-07-28 requests repeat the method and name in headers; they must say what the body says."""
    claimed_method = headers.get("mcp-method")
    if claimed_method is not None and claimed_method != message.get("method"):
        raise AccessDeniedError(
            f"The Mcp-Method header says '{claimed_method}' but the body calls '{message.get('method')}'."
        )
    claimed_name = headers.get("mcp-name")
    params = message.get("params")
    named = params.get("name", params.get("uri")) if isinstance(params, dict) else None
    if claimed_name is not None and named is not None and claimed_name != named:
        raise AccessDeniedError(f"The Mcp-Name header says '{claimed_name}' but the body names '{named}'.")


def _granting_scopes(policy: Policy, server: str, method: str, tool: str | None) -> str | None:
    """The scopes in scopes.yml that would allow this, space-separated (RFC 6750 `scope`), or None."""
    granting = [scope for scope in sorted(policy.file.scopes) if policy.allows(_holder_of(scope), server, method, tool)]
    return " ".join(granting) or None


def _holder_of(scope: str) -> Principal:
    return Principal(subject="", client_id="", issuer="", auth_method=AuthMethod.LOCAL, scopes=frozenset({scope}))


class PassthroughValidator:
    """The `/auth/validate` endpoint: authenticate, then apply the policy to the passthrough request."""

    def __init__(
        self,
        verifier: TokenVerifier | None,
        guard: Guard,
        origin: PublicOrigin,
        inspector: BodyInspector,
        marks: CacheMarks | None = None,
    ) -> None:
        self._verifier = verifier
        self._guard = guard
        self._origin = origin
        self._inspector = inspector
        self._marks = marks

    async def handle(self, request: Request) -> Response:
        """Answer one `auth_request` subrequest."""
        server = request.headers.get("x-mcp-server", "")
        method = request.headers.get("x-original-method", request.method).upper()
        # Taken before the token is checked: a reload or a revocation from here on gives nginx a
        # generation other than this one, so the allow below is not kept (aggregator.nginx.cache).
        policy, generation = self._marks.snapshot() if self._marks else (self._guard.policy.current, "")
        try:
            principal = await authenticate(request, self._verifier)
        except AuthenticationError as error:
            return self._unauthenticated(request, error.reason)
        messages: list[Message] = []  # a GET stream or a DELETE carries none: server-level access decides
        try:
            body = await self._read_body(request)
            if method == "POST" or body.strip():  # a body on any other method is judged all the same
                headers = {key.lower(): value for key, value in request.headers.items()}
                messages = read_messages(body, headers)
            if not server or not may_reach(policy, principal, server):
                raise AccessDeniedError(f"'{principal.describe()}' has no access to server '{server}'.")
            check_messages(policy, principal, server, messages)
        except AccessDeniedError as error:
            return self._forbidden(request, principal, server, method, messages, error)
        methods = [message.method for message in messages] or [method]
        tools = [message.tool for message in messages if message.tool is not None]
        self._record(principal, server, methods, tools, "allow")
        logger.info(
            "passthrough.allowed",
            extra={"principal": principal.describe(), "server": printable(server), "methods": methods, "tools": tools},
        )
        headers = identity_values(principal, policy.scopes_of(principal), server, tools)  # as the gateway's own
        if self._marks is not None:
            headers |= self._marks.allow_headers(request.headers, principal, generation, time.time())
        return JSONResponse({"allowed": True}, headers=headers)

    async def _read_body(self, request: Request) -> bytes:
        """The request body, held to the request limits; `AccessDeniedError` naming the limit passed."""
        body = await read_bounded(request.stream(), self._inspector.limits.max_bytes)
        if body is None:
            raise AccessDeniedError(f"{self._inspector.limits.too_large()} It cannot be authorised.")
        if (problem := await self._inspector.problem(body)) is not None:
            raise AccessDeniedError(f"{problem} It cannot be authorised.")
        return body

    def _unauthenticated(self, request: Request, reason: str) -> Response:
        path = _original_path(request)
        response = challenge(request, reason, self._origin, path=path, metadata=self._metadata_url(request))
        response.headers["X-Mcp-Auth-Body"] = json.dumps(json.loads(bytes(response.body)))  # ASCII: a header value
        response.headers["X-Accel-Expires"] = "0"
        return response

    def _forbidden(
        self,
        request: Request,
        principal: Principal,
        server: str,
        method: str,
        messages: list[Message],
        error: AccessDeniedError,
    ) -> Response:
        reason = str(error)
        tools = [message.tool for message in messages if message.tool is not None]
        self._record(principal, server, [message.method for message in messages] or [method], tools, "deny")
        logger.warning(
            "passthrough.denied",
            extra={"principal": principal.describe(), "server": printable(server), "reason": printable(reason)},
        )
        mark_refusal_logged(request.scope)
        body: dict[str, str] = {"error": "insufficient_scope", "error_description": reason}
        challenge = f'Bearer error="insufficient_scope", error_description="{printable(reason, 500)}"'
        if error.required_scope:
            body["scope"] = error.required_scope
            challenge += f', scope="{printable(error.required_scope, 500)}"'
        challenge += f', resource_metadata="{self._metadata_url(request)}"'
        headers = {"WWW-Authenticate": challenge, "X-Mcp-Auth-Body": json.dumps(body), "X-Accel-Expires": "0"}
        return JSONResponse(body, status_code=403, headers=headers)

    def _record(self, principal: Principal, server: str, methods: list[str], tools: list[str], decision: str) -> None:
        self._guard.audit.record(
            principal,
            ",".join(methods),
            ",".join(tools) or None,
            decision,
            outcome="passthrough",
            upstream=server,
        )

    def _metadata_url(self, request: Request) -> str:
        return f"{self._origin.origin(request.scope)}{METADATA_PATH}{quote(_original_path(request), safe=_PATH_SAFE)}"


def _original_path(request: Request) -> str:
    return urlsplit(request.headers.get("x-original-uri", "/")).path


def validate_routes(
    verifier: TokenVerifier | None,
    guard: Guard,
    origin: PublicOrigin,
    inspector: BodyInspector,
    authorization_servers: tuple[str, ...],
    marks: CacheMarks | None = None,
) -> list[Route]:
    """`/auth/validate` for nginx, and RFC 9728 metadata for every passthrough path (`/<server>/...`).

    With `marks`, allows tell nginx's decision cache how long it may keep them.
    """

    async def passthrough_metadata(request: Request) -> JSONResponse:
        body = {
            "resource": f"{origin.origin(request.scope)}/{request.path_params['path']}",
            "authorization_servers": list(authorization_servers),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-aggregator passthrough",
        }
        return JSONResponse(body, headers={"Cache-Control": "max-age=300"})

    return [
        Route(VALIDATE_PATH, PassthroughValidator(verifier, guard, origin, inspector, marks).handle, methods=["POST"]),
        Route(METADATA_PATH + "/{path:path}", passthrough_metadata, methods=["GET"]),
    ]
