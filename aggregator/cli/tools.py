"""`mcp-aggregator tools diff|approve|reject`: an operator's verdicts on held tool definitions.

These work on the pin store in the gateway's data_dir (`data_dir/pins.json`), under its lock, so
they need no running gateway and no token: whoever may write the data_dir is the operator. A
running gateway watches the file (it polls the file's stamp every `servers_reload_interval`
seconds) and re-reads it when it changes: an approved tool is served, and callers are told the
tool list changed, within that interval. Each verdict is appended to the audit log as the local user.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from aggregator.config.settings import load_settings
from aggregator.errors import UnknownNameError
from aggregator.policy.audit import AuditLog
from aggregator.policy.principal import AuthMethod, Principal
from aggregator.trust.store import PinStore
from aggregator.trust.verdicts import Verdict, decide, held_tools

EXIT_UNKNOWN = 1


def diff(args: argparse.Namespace) -> int:
    """Print every held definition (of one server, or one tool) with why it is held and its diff."""
    settings = load_settings(args.config)
    views = held_tools(PinStore(settings.data_dir / "pins.json").read(), lambda server: args.server in (None, server))
    views = [view for view in views if args.tool in (None, view["tool"])]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    if not views:
        print("no tool definitions are held", file=sys.stderr)
        return 0
    for view in views:
        print(f"{view['server']}/{view['tool']}: {view['change']}, held since {view['held_since']} ({view['reason']})")
        for finding in view["findings"]:
            print(f"  flagged {finding['rule']} in {finding['where']}: {finding['reason']}: {finding['excerpt']}")
        print(f"  fingerprint {view['fingerprint']}")
        print(view["diff"])
    return 0


def approve(args: argparse.Namespace) -> int:
    return _decide(args, "approved")


def reject(args: argparse.Namespace) -> int:
    return _decide(args, "rejected")


def _decide(args: argparse.Namespace, verdict: Verdict) -> int:
    settings = load_settings(args.config)
    operator = Principal(
        subject=f"cli:{getpass.getuser()}", client_id="mcp-aggregator", issuer="local", auth_method=AuthMethod.LOCAL
    )
    store = PinStore(settings.data_dir / "pins.json")
    try:
        decided, _ = decide(store, verdict, args.server, args.tool, operator.subject, args.fingerprint)
    except UnknownNameError as error:
        print(f"mcp-aggregator: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    audit = AuditLog(settings.data_dir / "audit.log" if settings.audit_log else None)
    try:
        audit.record(operator, "tools/pin", args.tool, "allow", upstream=args.server, action=verdict, **decided)
    finally:
        audit.close()
    print(f"{verdict} {args.server}/{args.tool} ({decided['fingerprint']}); running gateways apply it shortly")
    return 0
