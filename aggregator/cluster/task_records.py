"""The shape of a shared task record, and the one script that writes it (`aggregator.cluster.tasks`).

    {"owner": "<owner digest>", "replica": "<16 hex>", "task": {<the task as tasks/get shows it>}}

A record is written only while the one in Redis is not finished (`WRITE`), so a task another
replica has ended `failed` (its heartbeat lapsed) stays so for everyone.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import mcp_types as types

LAPSED = "The replica running this task stopped (its heartbeat lapsed); the outcome of the call is unknown."
"""How a task ends when its replica is gone: on every replica, and on its own if it comes back."""
TASK_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
"""What the gateway's task ids look like (`secrets.token_urlsafe`): only such an id is looked up in Redis."""

REPLICA = re.compile(r"[0-9a-f]{16}")
WRITE = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, record = pcall(cjson.decode, old)
  if ok and type(record) == 'table' and type(record.task) == 'table' then
    local status = record.task.status
    if status == 'completed' or status == 'failed' or status == 'cancelled' then return 0 end
  end
elseif ARGV[2] == 'keep' then
  return 0
end
if ARGV[2] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""
"""Write a task record unless the one in Redis is finished (ARGV[2]: lifetime in ms, or 'keep' it, if any)."""


def parsed(text: object, task_id: str) -> dict[str, Any] | None:
    """The record of `task_id` in `text`, if it is one: the replica's id shaped as this module makes them."""
    if not isinstance(text, str):
        return None
    try:
        record: Any = json.loads(text)
    except ValueError:
        return None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("owner"), str)
        and isinstance(record.get("replica"), str)
        and REPLICA.fullmatch(record["replica"]) is not None
        and isinstance(record.get("task"), dict)
        and record["task"].get("taskId") == task_id
    )
    return record if valid else None


def lapsed(shape: dict[str, Any]) -> dict[str, Any]:
    """`shape` (a task as tasks/get shows it) ended `failed` because its replica is gone."""
    ended = {key: value for key, value in shape.items() if key != "inputRequests"}
    ended.update(status="failed", statusMessage=LAPSED, error={"code": types.INTERNAL_ERROR, "message": LAPSED})
    return ended


def owner_digest(owner: str) -> str:
    """What shared records keep of a task's owner: enough to compare, nothing to read."""
    return hashlib.sha256(b"mcp-aggregator task owner\0" + owner.encode("utf-8")).hexdigest()


def shareable(task_id: object) -> bool:
    """Whether `task_id` (as a caller sent it) may name a shared record: a key is never built from anything else."""
    return isinstance(task_id, str) and TASK_ID.fullmatch(task_id) is not None
