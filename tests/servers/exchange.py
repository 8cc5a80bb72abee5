"""The era seam of the conformance upstream's fixtures: a question to the client, asked in either protocol era.

On 2025-11-25 `Exchange.ask` sends real server-to-client requests (elicitation, sampling, roots)
mid-call; on 2026-07-28 it ends the call with an `InputRequiredResult` (`InputRequired`) whose
`requestState` is sealed with an HMAC (`RequestStateSeal`), and returns the answers the client's
retry carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

Context = ServerRequestContext[Any, Any]


def text(value: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=value)])


def elicit(message: str, properties: dict[str, Any], required: list[str] | None = None) -> types.ElicitRequest:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def sample(prompt: str, max_tokens: int) -> types.CreateMessageRequest:
    message = types.SamplingMessage(role="user", content=types.TextContent(text=prompt))
    return types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    )


def answered(response: types.InputResponse | None, field: str) -> Any:
    """The value the user entered for `field` in an accepted elicitation, else None."""
    if isinstance(response, types.ElicitResult) and response.action == "accept" and response.content:
        return response.content.get(field)
    return None


def sampled_text(response: types.InputResponse | None) -> str:
    if isinstance(response, types.CreateMessageResult) and isinstance(response.content, types.TextContent):
        return response.content.text
    return "no response"


def missing_capability(capabilities: types.ClientCapabilities) -> NoReturn:
    required = capabilities.model_dump(by_alias=True, mode="json", exclude_none=True)
    names = ", ".join(sorted(required))
    raise MCPError(
        types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"This call needs the client capability {names}, which the client did not declare.",
        data=types.MissingRequiredClientCapabilityErrorData(required_capabilities=capabilities).model_dump(
            by_alias=True, mode="json", exclude_none=True
        ),
    )


_CAPABILITY_FOR_REQUEST: dict[type[types.InputRequest], types.ClientCapabilities] = {
    types.ElicitRequest: types.ClientCapabilities(elicitation=types.ElicitationCapability()),
    types.CreateMessageRequest: types.ClientCapabilities(sampling=types.SamplingCapability()),
    types.ListRootsRequest: types.ClientCapabilities(roots=types.RootsCapability()),
}
_RESULT_FOR_REQUEST: dict[type[types.InputRequest], type[types.InputResponse]] = {
    types.ElicitRequest: types.ElicitResult,
    types.CreateMessageRequest: types.CreateMessageResult,
    types.ListRootsRequest: types.ListRootsResult,
}


class InputRequired(Exception):
    """Raised by `Exchange.ask` on the 2026-07-28 wire: the call ends with this result, to be retried."""

    def __init__(self, result: types.InputRequiredResult) -> None:
        super().__init__("input required")
        self.result = result


class RequestStateSeal:
    """Seals `requestState` with an HMAC so a client cannot forge or alter it (SEP-2322)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, state: Mapping[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def open(self, sealed: str) -> dict[str, Any]:
        payload, _, signature = sealed.partition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise MCPError(types.INVALID_PARAMS, "requestState failed its integrity check; it was altered or forged.")
        state: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
        return state

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()


@dataclass
class Exchange:
    """One tools/call or prompts/get as a fixture sees it, in either protocol era.

    `ask` is the era seam: on 2025-11-25 it sends real server-to-client requests and returns
    the answers; on 2026-07-28 it returns the answers the client's retry carries, or raises
    `InputRequired` listing the questions still open together with the sealed `state`.
    """

    ctx: Context
    name: str
    arguments: dict[str, Any]
    input_responses: Mapping[str, types.InputResponse]
    sealed_state: str | None
    seal: RequestStateSeal

    @property
    def modern(self) -> bool:
        return self.ctx.protocol_version in MODERN_PROTOCOL_VERSIONS

    def verified_state(self) -> dict[str, Any] | None:
        """The verified `requestState` of this retry, bound to this tool or prompt."""
        if self.sealed_state is None:
            return None
        state = self.seal.open(self.sealed_state)
        if state.get("for") != self.name:
            raise MCPError(
                types.INVALID_PARAMS, f"requestState was issued for {state.get('for')!r}, not {self.name!r}."
            )
        return state

    def declares(self, capabilities: types.ClientCapabilities) -> bool:
        return self.ctx.session.check_client_capability(capabilities)

    async def ask(
        self, requests: Mapping[str, types.InputRequest], state: Mapping[str, Any] | None = None
    ) -> dict[str, types.InputResponse]:
        """Answers to `requests`; requests the client has no capability for are left out."""
        askable = {key: request for key, request in requests.items() if self.declares(_capability(request))}
        if requests and not askable:
            missing_capability(_capability(next(iter(requests.values()))))
        if not self.modern:
            return {key: await self._send(request) for key, request in askable.items()}
        open_questions = {key: request for key, request in askable.items() if key not in self.input_responses}
        if open_questions:
            sealed = self.seal.seal({**(state or {}), "for": self.name}) if state is not None else None
            raise InputRequired(types.InputRequiredResult(input_requests=open_questions, request_state=sealed))
        return {key: self.input_responses[key] for key in askable}

    async def _send(self, request: types.InputRequest) -> types.InputResponse:
        metadata = ServerMessageMetadata(related_request_id=self.ctx.request_id)
        return await self.ctx.session.send_request(request, _RESULT_FOR_REQUEST[type(request)], metadata=metadata)


def _capability(request: types.InputRequest) -> types.ClientCapabilities:
    return _CAPABILITY_FOR_REQUEST[type(request)]
