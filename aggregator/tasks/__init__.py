"""The tasks extension (SEP-2663): calls that outlive their request, kept per principal within bounds.

`task` (one task and its wire shapes), `store` (tasks by id and owner, TTL and size bounds),
`runner` (the background calls, in a task group owned by a context manager) and `extension`
(the handlers, installed on the SDK server by `aggregator.server.gateway`).
"""
