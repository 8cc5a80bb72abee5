"""The downstream MCP server: handlers, resources, notifications, the edge where errors become MCP
errors, metrics, and the assembled Gateway.
"""
