"""The echo upstream over stdio, for `bench/latency.py`'s stdio row: `python bench/_echo_stdio.py`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.servers.echo import create_server

if __name__ == "__main__":
    create_server().run("stdio")
