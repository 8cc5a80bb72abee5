"""A small REST service (Starlette) that serves its own OpenAPI 3.1 document: an inventory of items.

It has what an openapi upstream must handle: path, query and body parameters, bearer auth,
cursor pagination, an endpoint that answers any error status (JSON or an HTML page), one that
answers plain text, and one that never answers. Every API request's headers are kept in
`RestService.requests`, so tests can see what reached the service (and what never did).

    service = RestService(token="service-secret")
    async with serve_asgi(service.app, path="") as base:
        spec_url = base + "/openapi.json"
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

ITEM = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "quantity": {"type": "integer"}},
    "required": ["id", "name", "quantity"],
}
NEW_ITEM = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "What the item is called."},
        "quantity": {"type": "integer", "minimum": 0, "description": "How many are in stock."},
    },
    "required": ["name", "quantity"],
}
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(operation_id: str, tag: str, summary: str, **details: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "tags": [tag], "summary": summary, **details}


ITEM_ID = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}
PATHS: dict[str, Any] = {
    "/items": {
        "get": _operation(
            "listItems",
            "items",
            "List the items in the inventory, a page at a time.",
            parameters=[
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 2, "maximum": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "From next_cursor."},
            ],
            responses={
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    }
                )
            },
        ),
        "post": _operation(
            "createItem",
            "items",
            "Create an inventory item with a name and a stock quantity.",
            requestBody={"required": True, "content": {"application/json": {"schema": NEW_ITEM}}},
            responses={"201": _json({"$ref": "#/components/schemas/Item"}, "Created")},
        ),
    },
    "/items/{item_id}": {
        "get": _operation(
            "getItem",
            "items",
            "Get one inventory item by its id.",
            parameters=[ITEM_ID],
            responses={"200": _json({"$ref": "#/components/schemas/Item"}), "404": _json(ERROR, "No such item")},
        ),
        "delete": _operation(
            "deleteItem",
            "admin",
            "Delete an inventory item.",
            parameters=[ITEM_ID],
            responses={"204": {"description": "Deleted"}},
        ),
    },
    "/failures/{status}": {
        "get": _operation(
            "failWith",
            "failures",
            "Answer with the given HTTP status (an HTML page when html is true).",
            parameters=[
                {"name": "status", "in": "path", "required": True, "schema": {"type": "integer"}},
                {"name": "html", "in": "query", "schema": {"type": "boolean", "default": False}},
            ],
            responses={"200": _json(ERROR)},
        )
    },
    "/notice": {
        "get": _operation(
            "getNotice",
            "failures",
            "Read the shop notice (plain text).",
            responses={"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        )
    },
    "/stall": {
        "get": _operation("stall", "failures", "Never answer.", responses={"200": {"description": "Never sent"}})
    },
}


@dataclass
class RestService:
    """The service and what it saw. With a `token` (or once /token has issued one), every API request must carry
    `Authorization: Bearer <token>`."""

    token: str | None = None
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    """The headers of every API request, lower-cased names, in arrival order."""
    paths: dict[str, Any] = field(default_factory=lambda: dict(PATHS))
    """The document's paths: a test may change them, then re-read the spec."""
    documents_served: int = 0
    """How often /openapi.json was fetched."""
    document_requests: list[dict[str, str]] = field(default_factory=list)
    """The headers of every request for /openapi.json."""
    clients: dict[str, str] = field(default_factory=dict)
    """OAuth2 clients (id -> secret) that /token gives an access token (client credentials grant)."""
    issued: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for number, name in enumerate(("anvil", "bellows", "chisel", "drill", "emery cloth"), start=1):
            self.items[number] = {"id": number, "name": name, "quantity": number * 10}
        self.app = Starlette(
            routes=[
                Route("/openapi.json", self._document),
                Route("/token", self._token, methods=["POST"]),
                Route("/items", self._list, methods=["GET"]),
                Route("/items", self._create, methods=["POST"]),
                Route("/items/{item_id:int}", self._get, methods=["GET"]),
                Route("/items/{item_id:int}", self._delete, methods=["DELETE"]),
                Route("/failures/{status:int}", self._fail),
                Route("/notice", self._notice),
                Route("/stall", self._stall),
            ]
        )

    def document(self, base_url: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document, its server at `base_url`."""
        return {
            "openapi": "3.1.0",
            "info": {"title": "Inventory", "version": "1.0.0"},
            "servers": [{"url": base_url}],
            "paths": self.paths,
            "components": {
                "schemas": {"Item": ITEM},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        }

    async def _document(self, request: Request) -> Response:
        self.documents_served += 1
        self.document_requests.append({name.lower(): value for name, value in request.headers.items()})
        return JSONResponse(self.document(str(request.base_url).rstrip("/")))

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        client_id, _, secret = base64.b64decode(encoded or "").decode().partition(":")
        if scheme != "Basic" or form.get("grant_type") != "client_credentials" or self.clients.get(client_id) != secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.issued.append(f"issued-{client_id}-{len(self.issued) + 1}")
        return JSONResponse({"access_token": self.issued[-1], "token_type": "Bearer", "expires_in": 300})

    def _refused(self, request: Request) -> Response | None:
        self.requests.append({name.lower(): value for name, value in request.headers.items()})
        accepted = {f"Bearer {token}" for token in (self.token, *self.issued) if token is not None}
        if (self.token is not None or self.issued) and request.headers.get("authorization") not in accepted:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return None

    async def _list(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        limit = int(request.query_params.get("limit", "2"))
        start = int(request.query_params.get("cursor", "0"))
        page = list(self.items.values())[start : start + limit]
        following = start + limit if start + limit < len(self.items) else None
        return JSONResponse({"items": page, "next_cursor": None if following is None else str(following)})

    async def _create(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        number = max(self.items, default=0) + 1
        self.items[number] = {"id": number, "name": body["name"], "quantity": body["quantity"]}
        return JSONResponse(self.items[number], status_code=201)

    async def _get(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        item = self.items.get(request.path_params["item_id"])
        if item is None:
            return JSONResponse({"error": f"no item {request.path_params['item_id']}"}, status_code=404)
        return JSONResponse(item)

    async def _delete(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        self.items.pop(request.path_params["item_id"], None)
        return Response(status_code=204)

    async def _fail(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        status = request.path_params["status"]
        if request.query_params.get("html") == "true":
            return HTMLResponse("<!doctype html><html><body><h1>Bad Gateway</h1></body></html>", status_code=status)
        return JSONResponse({"error": f"failing with {status} as asked"}, status_code=status)

    async def _notice(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        return PlainTextResponse("Closed on Sundays.")

    async def _stall(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the request body; then nothing until the client gives up
        return Response(status_code=499)
