"""The operator console (`mcp-aggregator tui`): a Textual app that manages a gateway through its MCP admin tools.

client.py      one MCP session to the gateway: admin tools, lists, search; Refused / Unreachable
link.py        keeps that session open: polls, reconnects with backoff, reports its state
models.py      typed views of the answers (Service, Activity, Snapshot, ...)
search.py      the gateway's intelligent_tool_finder, or a local match over tools/list
app.py         owns the link; hands state down to the screens; runs requested changes in workers
messages.py    what widgets and screens ask the app to do; commands.py: command palette entries
screens/       main (servers | tools | activity tabs), a server's detail, register form, confirm
widgets/       status line, filter bar, servers table, tools search, activity tail, tool schema
formatting.py  how values look; validation.py: the register form's field checks
"""
