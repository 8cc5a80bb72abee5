"""The OpenAPI 3.1 description of the registry read API (`/v0.1/openapi.json`).

The server schema is the part of the official `server.json` (2025-12-11) that the gateway emits,
written from its documented fields; responses are checked against the official schema itself in
the tests.
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"


def openapi_document() -> dict[str, Any]:
    """The document, built fresh (callers may mutate it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcp-aggregator registry API",
            "version": "0.1",
            "description": "The servers behind this gateway, in the official MCP registry format (read-only).",
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/v0.1/servers": {
                "get": _operation(
                    "listServers",
                    "List the servers you may use",
                    [
                        _query("cursor", {"type": "string"}, "The `metadata.nextCursor` of the previous page."),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size (default 30)."),
                        _query("search", {"type": "string"}, "Substring of the server name (case-insensitive)."),
                        _query("version", {"type": "string"}, "`latest` or an exact version."),
                    ],
                    {"200": _json("A page of servers.", "ServerList"), "400": _json("Bad parameters.", "Error")},
                )
            },
            "/v0.1/servers/{serverName}/versions": {
                "get": _operation(
                    "listServerVersions",
                    "List the versions of a server",
                    [_path("serverName")],
                    {"200": _json("The server's versions.", "ServerList"), "404": _json("No such server.", "Error")},
                )
            },
            "/v0.1/servers/{serverName}/versions/{version}": {
                "get": _operation(
                    "getServerVersion",
                    "Get one version of a server (`latest` for the newest)",
                    [_path("serverName"), _path("version")],
                    {"200": _json("The server.", "ServerResponse"), "404": _json("No such server.", "Error")},
                )
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": _schemas(),
        },
    }


def _operation(
    operation_id: str, summary: str, parameters: list[dict[str, Any]], responses: dict[str, Any]
) -> dict[str, Any]:
    unauthorized = _json("A missing or unacceptable bearer token.", "Error")
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": {**responses, "401": unauthorized},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


def _schemas() -> dict[str, Any]:
    header = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "isRequired": {"type": "boolean"},
            "isSecret": {"type": "boolean"},
        },
    }
    remote = {
        "type": "object",
        "required": ["type", "url"],
        "properties": {
            "type": {"type": "string", "enum": ["streamable-http", "sse"]},
            "url": {"type": "string", "pattern": "^https?://[^\\s]+$"},
            "headers": {"type": "array", "items": header},
        },
    }
    server = {
        "type": "object",
        "required": ["name", "description", "version"],
        "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string", "minLength": 3, "maxLength": 200, "pattern": "^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$"},
            "description": {"type": "string", "minLength": 1, "maxLength": 100},
            "version": {"type": "string", "maxLength": 255},
            "remotes": {"type": "array", "items": remote},
        },
    }
    gateway = {
        "type": "object",
        "required": ["server", "prefix", "transport", "enabled", "state", "tools", "tags"],
        "properties": {
            "server": {"type": "string"},
            "prefix": {"type": "string"},
            "transport": {"type": "string", "enum": ["streamable-http", "sse", "stdio"]},
            "enabled": {"type": "boolean"},
            "state": {"type": "string"},
            "protocolVersion": {"type": ["string", "null"]},
            "tools": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    official = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["active", "deprecated", "deleted"]},
            "isLatest": {"type": "boolean"},
        },
    }
    return {
        "ServerDetail": server,
        "ServerResponse": {
            "type": "object",
            "required": ["server"],
            "properties": {
                "server": {"$ref": _REF + "ServerDetail"},
                "_meta": {
                    "type": "object",
                    "properties": {
                        "io.modelcontextprotocol.registry/official": official,
                        "io.github.mcp-aggregator/gateway": gateway,
                    },
                },
            },
        },
        "ServerList": {
            "type": "object",
            "required": ["servers", "metadata"],
            "properties": {
                "servers": {"type": "array", "items": {"$ref": _REF + "ServerResponse"}},
                "metadata": {
                    "type": "object",
                    "required": ["count"],
                    "properties": {"count": {"type": "integer", "minimum": 0}, "nextCursor": {"type": "string"}},
                },
            },
        },
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    }
