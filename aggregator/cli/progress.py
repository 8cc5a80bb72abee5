"""Progress of a long command on stderr: counts, rate and time left, rewritten in place on a terminal.

On a terminal the line is rewritten every `interval` seconds; in a log (not a terminal) a line is
written every `log_interval` seconds instead, so a CI log shows progress without thousands of lines.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

import anyio


def quiet_model_loading() -> None:
    """Keep the model's own progress bars (huggingface_hub's tqdm) off this command's stderr."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`: short enough for a progress line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """Reports `done()` of `total` items while `run()` runs; `finish()` writes the last line."""

    def __init__(
        self,
        what: str,
        total: int,
        done: Callable[[], int],
        *,
        out: TextIO | None = None,
        interval: float = 0.5,
        log_interval: float = 5.0,
    ) -> None:
        self.what = what
        self.total = total
        self._done = done
        self._out = out or sys.stderr
        self._terminal = self._out.isatty()
        self._interval = interval if self._terminal else log_interval
        self._started = time.monotonic()

    def line(self, done: int, elapsed: float) -> str:
        """`embedding: 120/480 texts (25%), 40/s, about 9s left`; the rate and ETA once there is one."""
        total = max(self.total, done)
        percent = 100 * done // total if total else 100
        text = f"{self.what}: {done}/{total} ({percent}%)"
        if done and elapsed > 0:
            rate = done / elapsed
            text += f", {rate:.0f}/s, about {duration((total - done) / rate)} left"
        return text

    async def run(self) -> None:
        """Write the line every interval until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            self._write(self.line(self._done(), time.monotonic() - self._started), final=False)

    def finish(self) -> str:
        """Write and return the summary: how many, in how long."""
        done, elapsed = self._done(), time.monotonic() - self._started
        rate = f" ({done / elapsed:.0f}/s)" if done and elapsed > 0 else ""
        summary = f"{self.what}: {done}/{max(self.total, done)} in {duration(elapsed)}{rate}"
        self._write(summary, final=True)
        return summary

    def _write(self, text: str, *, final: bool) -> None:
        if self._terminal:
            self._out.write(f"\r\x1b[2K{text}" + ("\n" if final else ""))
        else:
            self._out.write(text + "\n")
        self._out.flush()
