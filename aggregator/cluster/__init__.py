"""Several replicas as one gateway: the state they share through Redis (`cluster.redis_url`).

    health.py       whether Redis answers now; each change logged once, shown on /readyz and /metrics
    ratelimit.py    RedisBuckets: one token bucket per principal for every replica (an atomic Lua script)
    revocations.py  SharedRevocations: the local revocation list mirrored to a Redis set, pushed by pub/sub
    registry_sync.py SharedFile: servers.yaml and scopes.yml as admin tools change them, versioned in Redis
    sessions.py     SharedSessions: 2025-11-25 session records (principal digest, version, client, log level)
    records.py      SharedRecords: a hash of records merged field by field (the tool-definition pins)
    tasks.py        SharedTasks: 2026-07-28 task records any replica reads; cancel and answers sent to the runner
    task_records.py the shape of those records, and the script that never writes over a finished one
    adoption.py     SessionSharing: writes those records as sessions change; any replica adopts a session by id
    cluster.py      Cluster: the client and the listener task, as one async context manager

What is shared is injected by `aggregator.server.gateway` (policy and registry never import this
package). Redis unreachable: every replica answers from its own state (its own buckets, its own
revocation file, its own servers and scopes files, its own sessions, its own pin store, its own tasks) and catches
up when Redis returns.
"""

from aggregator.cluster.adoption import SessionSharing
from aggregator.cluster.cluster import Cluster
from aggregator.cluster.health import RedisHealth

__all__ = ["Cluster", "RedisHealth", "SessionSharing"]
