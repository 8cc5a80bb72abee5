"""The lean relay path: `tools/call` and `tools/list` served below the SDK's session machinery.

Most traffic through a gateway is `tools/call` to a connected upstream, and `tools/list`. For
those, `LeanApp` (in front of the SDK's streamable-HTTP app on `/mcp`) parses the body once,
checks that it can serve the request exactly as the SDK path would (`requests`), and then runs
the same gateway functions: `edge.answer` (log, audit, metrics, error mapping), the rate limiter,
the concurrency slots, the argument limit, the catalog with the policy's decisions (memoised per
policy version and scopes, `decisions`), and the upstream's lean transport
(`aggregator.upstreams.lean`). The answer is shaped by the SDK's own result pipeline (`calls`).

Fallback, never divergence: anything else is handed, untouched, to the SDK's app: other methods,
batches, notifications, `initialize`, progress tokens, 2026-07-28 logging opt-ins and input
retries, callers that declared sampling, elicitation or roots, unknown or foreign sessions, SSE,
stdio and caller-registered upstreams, the gateway's own tools, discovery mode, and every request
the SDK would refuse (bad headers, envelopes, params). `lean_path: false` turns the path off.
"""

from aggregator.server.lean.app import LeanApp, lean_app
from aggregator.server.lean.decisions import DecisionCache
from aggregator.server.lean.sessions import LegacyConnections

__all__ = ["DecisionCache", "LeanApp", "LegacyConnections", "lean_app"]
