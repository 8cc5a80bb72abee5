"""The `mcp-aggregator` command line: serve, stdio, token, nginx, import, check-config, index, search, tui, login."""
