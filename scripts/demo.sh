#!/usr/bin/env bash
# Run the gateway on 127.0.0.1:8000 with the bundled demo upstreams, for local use (--insecure-dev:
# callers are not verified; see configs/gateway.secure.yaml for a configuration with auth):
#   weather (streamable HTTP, started here on 127.0.0.1:8101), notes (stdio) and time (stdio, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m examples.servers.weather --host 127.0.0.1 --port 8101 --log-level warning >/dev/null &
weather=$!
trap 'kill "$weather" 2>/dev/null; wait "$weather" 2>/dev/null || true' EXIT INT TERM

python -m aggregator serve --config configs/gateway.yaml --insecure-dev "$@"
