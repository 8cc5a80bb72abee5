"""mcp-aggregator: one MCP endpoint in front of many MCP servers, filtered per caller (see docs/architecture.md)."""
