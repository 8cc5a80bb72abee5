"""Structured logs: one event per line, `time level event key=value ...`, on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_NEEDS_QUOTES = re.compile(r'[\s"=]')  # `\s` is `str.isspace` for str patterns


class KeyValueFormatter(logging.Formatter):
    """Formats `logger.info("event.name", extra={...})` as `2026-11-24T12:00:00Z info event.name k=v`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        parts = [stamp, record.levelname.lower(), record.getMessage()]
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                parts.append(f"{key}={_render(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _render(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or _NEEDS_QUOTES.search(text):
        return json.dumps(text)
    return text


def configure_logging(level: str) -> None:
    """Send every log record to stderr in the key=value format (stdout may be an MCP stdio stream)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDK logs every request at INFO; keep the gateway's own events readable.
    for noisy in ("mcp", "httpx2", "httpcore2", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
