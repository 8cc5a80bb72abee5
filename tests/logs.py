"""What an in-process gateway logs, collected line by line as the gateway would write it, and waited on.

A subprocess's log is its stderr (`tests.processes.RunningProcess`); an in-process gateway's is
the records of the `aggregator` loggers, formatted with the gateway's own formatter.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aggregator.config.logs import KeyValueFormatter
from tests.processes import OutputLines

LOG_DEADLINE = 10.0


class LogLines(OutputLines, logging.Handler):
    """Log lines as the gateway writes them (`time level event key=value`), collected as they are emitted.

    Tests wait for a line (`wait_for`) instead of sleeping; `mark()` and `after=` limit a search to
    what was logged since. Records may come from worker threads: the waiters are woken in the loop.
    """

    def __init__(self) -> None:
        OutputLines.__init__(self)
        logging.Handler.__init__(self, logging.INFO)
        self.records: list[logging.LogRecord] = []
        """The records behind `lines`, index for index (for their level, event and fields)."""
        self.setFormatter(KeyValueFormatter())
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))
        if threading.get_ident() == self._thread:
            self._wake()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    async def wait_for(self, pattern: re.Pattern[str] | str, deadline: float = LOG_DEADLINE, after: int = 0) -> str:
        return await super().wait_for(pattern, deadline, after)


@contextmanager
def captured_logs() -> Iterator[LogLines]:
    """Collect the gateway's INFO events (and every logger's warnings) while the block runs."""
    lines = LogLines()
    gateway_logger = logging.getLogger("aggregator")
    level = gateway_logger.level
    if gateway_logger.getEffectiveLevel() > logging.INFO:
        gateway_logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(lines)
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(lines)
        gateway_logger.setLevel(level)
