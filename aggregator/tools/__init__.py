"""The gateway's own MCP tools: registry management, groups, activity, the tool finder and discovery tools."""
