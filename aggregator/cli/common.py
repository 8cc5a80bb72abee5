"""What the CLI's commands share: exit codes, the token variable, loading settings and servers."""

from __future__ import annotations

import argparse

from aggregator.config.settings import Settings, load_settings
from aggregator.registry.models import ServersFile, load_servers

EXIT_CONFIG = 2
TOKEN_VARIABLE = "MCP_AGGREGATOR_TOKEN"


def load(args: argparse.Namespace, **overrides: object) -> tuple[Settings, ServersFile]:
    servers_file = getattr(args, "servers_file", None) or args.servers
    settings = load_settings(args.config, servers_file=servers_file, **overrides)
    return settings, load_servers(settings.servers_file)
