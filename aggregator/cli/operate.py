"""The operator's one-shot commands: token, nginx, import, check-config, index, search; and login, tui."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio
import yaml

from aggregator.cli.common import TOKEN_VARIABLE, load
from aggregator.config.logs import configure_logging
from aggregator.config.settings import load_login_settings, load_settings
from aggregator.errors import NginxError
from aggregator.nginx import NginxControl, NginxPaths, apply, render
from aggregator.policy.revocation import RevocationList
from aggregator.policy.scopes import describe, load_scopes
from aggregator.policy.vending import mint_token
from aggregator.registry import importer


def login(args: argparse.Namespace) -> int:
    scopes = tuple(scope for given in args.scopes or () for scope in given.split())
    settings = load_login_settings(
        issuer=args.issuer,
        client_id=args.client_id,
        scopes=scopes or None,
        resource=args.resource,
        token_file=args.token_file,
        redirect_port=args.port,
    )
    from aggregator.cli import login  # the sign-in flow loads only for this command

    return login.run(settings, refresh_only=args.refresh, open_browser=not args.no_browser)


def tui(args: argparse.Namespace) -> int:
    from tui.launch import launch  # Textual loads only for this command

    return launch(args.url, args.token or os.environ.get(TOKEN_VARIABLE))


def token_mint(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    token, claims = mint_token(
        settings.auth,
        args.sub,
        _split(args.scopes),
        args.ttl,
        client_id=args.client_id,
        groups=_split(args.groups),
    )
    print(token)
    print(f"jti={claims['jti']} expires={claims['exp']} scopes={claims['scope']!r}", file=sys.stderr)
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    RevocationList(settings.data_dir / "revoked.json").revoke(args.jti)
    print(f"revoked {args.jti}; running gateways refuse it from their next request on", file=sys.stderr)
    return 0


def _split(values: str) -> list[str]:
    return [value.strip() for value in values.split(",") if value.strip()]


def nginx(args: argparse.Namespace) -> int:
    settings, servers = load(args)
    configure_logging(settings.log_level)
    try:
        if getattr(args, "stdout", False):
            print(render(settings, servers).text, end="")
            return 0
        control = NginxControl(settings.nginx.binary, NginxPaths.from_settings(settings))
        outcome, _ = apply(settings, servers, control, reload=args.reload, force=getattr(args, "force", False))
    except NginxError as error:
        print(f"mcp-aggregator: {error}", file=sys.stderr)
        return 1
    state = "updated" if outcome.changed else "unchanged"
    reloaded = "; nginx reloaded" if outcome.reloaded else ""
    print(f"{control.paths.config_file}: {state}{reloaded}")
    print(f"  passthrough: {', '.join(f'/{name}/' for name in outcome.passthrough) or 'none'}")
    for name, reason in outcome.skipped.items():
        print(f"  skipped {name}: {reason}")
    return 0


def import_records(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, servers_file=args.servers)
    configure_logging(settings.log_level)
    reserved = frozenset({settings.gateway_server_name})
    if args.host:
        return _import_host(args, settings.servers_file, reserved)
    if args.dry_run:
        seed = importer.read_seed(args.directory)
        report = importer.dry_run(seed, settings.servers_file, replace=args.replace, reserved=reserved)
    else:
        report = anyio.run(
            lambda: importer.import_into(args.directory, settings.servers_file, replace=args.replace, reserved=reserved)
        )
    print("\n".join(importer.describe(report, settings.servers_file, dry_run=args.dry_run)))
    return 0


def show_config(args: argparse.Namespace) -> int:
    """The settings in effect as YAML (secrets masked), or the generated reference of every setting."""
    if args.reference:
        from aggregator.config.reference import render

        print(render(), end="")
        return 0
    settings = load_settings(args.config)
    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _import_host(args: argparse.Namespace, servers_file: Path, reserved: frozenset[str]) -> int:
    """`import --from HOST FILE`: the host's servers into servers.yaml, credentials into the environment."""
    from aggregator.registry import host_import

    if args.dry_run:
        result = host_import.dry_run(args.directory, args.host, servers_file, replace=args.replace, reserved=reserved)
    else:
        result = anyio.run(
            lambda: host_import.import_host_file(
                args.directory, args.host, servers_file, replace=args.replace, reserved=reserved
            )
        )
        if args.env_file is not None and result.secrets:
            host_import.write_env_file(args.env_file, result.secrets)
    print("\n".join(importer.describe(result.report, servers_file, dry_run=args.dry_run)))
    environment = host_import.describe_environment(result, None if args.dry_run else args.env_file)
    if environment:
        print("\n".join(environment))
    return 0


def check_config(args: argparse.Namespace) -> int:
    settings, servers = load(args)
    enabled = [name for name, spec in servers.servers.items() if spec.enabled]
    print(f"{settings.servers_file}: OK, {len(servers.servers)} servers ({len(enabled)} enabled)")
    for name, spec in servers.servers.items():
        state = "enabled" if spec.enabled else "disabled"
        print(f"  {name}: {spec.transport}, {state}")
    if settings.scopes_file is not None:
        counts = describe(load_scopes(settings.scopes_file))
        summary = f"{counts['groups']} groups, {counts['scopes']} scopes, {counts['rules']} rules"
        print(f"{settings.scopes_file}: OK, {summary}")
    verifiers = len(settings.auth.gateway_keys) + len(settings.auth.oidc_issuers)
    print(f"auth: {verifiers} token verifiers" if verifiers else "auth: none configured (serve needs --insecure-dev)")
    if args.connect:
        from aggregator.cli.connect import check_names  # connects: loads the gateway only for --connect

        return check_names(settings, servers)
    return 0
