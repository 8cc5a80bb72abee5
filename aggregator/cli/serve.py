"""`mcp-aggregator serve` (HTTP) and `mcp-aggregator stdio`: run one gateway until stopped."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import anyio
import httpx2
import uvicorn
from mcp.server.stdio import stdio_server
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aggregator.cli.common import EXIT_CONFIG, TOKEN_VARIABLE, load
from aggregator.cli.hosts import announcement
from aggregator.config.logs import configure_logging
from aggregator.config.settings import Settings
from aggregator.config.tracing import load_tracing_settings
from aggregator.errors import AuthenticationError
from aggregator.http.app import LOOPBACK, create_app
from aggregator.http.auth import INSECURE_DEV_PRINCIPAL
from aggregator.policy.principal import Principal, current_principal
from aggregator.policy.revocation import RevocationList
from aggregator.policy.tokens import TokenVerifier
from aggregator.server.gateway import build_gateway
from aggregator.tracing.provider import tracing_from

logger = logging.getLogger(__name__)


def serve(args: argparse.Namespace) -> int:
    settings, servers = load(args, host=args.host, port=args.port)
    configure_logging(settings.log_level)
    _skip_unprinted_record_fields()
    if refusal := _refuse_insecure(settings, args.insecure_dev) or _refuse_unnamed(settings):
        print(f"mcp-aggregator: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    gateway = build_gateway(settings, servers, tracing_from(load_tracing_settings()))
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP (not 0) lets asyncio recognise the socket as TCP and set TCP_NODELAY on each
    # connection; without it a response written in two parts waits ~40 ms for a delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((settings.host, settings.port))
    except OSError as error:
        print(f"mcp-aggregator: cannot listen on {settings.host}:{settings.port}: {error.strerror}", file=sys.stderr)
        return 1
    listener.listen(512)
    port = listener.getsockname()[1]
    host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    url = settings.public_url or f"http://{host}:{port}/mcp"

    def announce() -> None:
        # Once every upstream's first connection attempt has settled: a client connecting at READY sees
        # every tool there is.
        print(announcement(url, secured=settings.auth.enabled), file=sys.stderr, flush=True)

    app = create_app(gateway, on_ready=announce)
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.Server(server_config(app, settings.shutdown_grace)).run(sockets=[listener])
    return 0


def server_config(app: ASGIApp, shutdown_grace: int = 10) -> uvicorn.Config:
    """uvicorn's settings for the gateway: httptools (C) parsing, each answer written in one piece.

    httptools (llhttp) strips optional whitespace around header values as HTTP requires, as h11
    does (the 2026-07-28 Mcp-Name/Mcp-Method checks compare those values with the body), at a
    fraction of h11's CPU per request (`bench/latency.py`). `shutdown_grace`: seconds SIGTERM lets
    calls in flight finish.
    """
    return uvicorn.Config(
        app,
        http=CorkedHttpToolsProtocol,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=shutdown_grace,
    )


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, whose writes of one event-loop step leave as one.

    uvicorn writes an answer's head when the app sends `http.response.start` and its body on
    `http.response.body`: two syscalls, and a caller woken for a head it cannot use without the
    body. Both are sent in the same step, so holding writes until the step ends joins them; a
    streamed answer still leaves event by event, since the app awaits something between events.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CorkedTransport(transport))  # type: ignore[arg-type]


class _CorkedTransport:
    """A transport whose writes are gathered and flushed once, at the end of the loop's current step."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def _skip_unprinted_record_fields() -> None:
    """No handler of the gateway prints a log record's source location, thread or process: do not
    work them out for each record (the logging HOWTO's "Optimization"; a request logs two records)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _stopped(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises SIGTERM once its graceful shutdown (upstreams closed, children reaped) is done:
    end the process there as the default action would, but with status 0, since the stop was clean."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _refuse_insecure(settings: Settings, insecure_dev: bool) -> str | None:
    """Why the gateway must not start with these auth settings, or None. Deny by default."""
    if settings.auth.enabled:
        if insecure_dev:
            return "--insecure-dev conflicts with the configured token verifiers; drop one of them"
        return None
    if not insecure_dev:
        return (
            "no token verifier is configured (auth.gateway_keys or auth.oidc_issuers), so callers cannot be "
            "identified; configure one, or pass --insecure-dev for local development on loopback"
        )
    if settings.host not in LOOPBACK:
        return f"--insecure-dev is only allowed on loopback, not on {settings.host}"
    logger.warning("gateway.insecure_dev", extra={"detail": "callers are not verified; every caller is unrestricted"})
    return None


def _refuse_unnamed(settings: Settings) -> str | None:
    """Why the gateway must not listen beyond loopback without `public_url`, or None.

    The gateway hands out its own URL (401 challenges, RFC 9728 metadata, registry remotes). Without
    `public_url` it can only name the address it is bound to, which is no URL for remote clients:
    on a non-loopback bind, the operator must say how clients reach it.
    """
    if settings.public_url or _is_loopback(settings.host):
        return None
    return (
        f"listening on {settings.host} (beyond loopback) needs public_url, the URL clients use to reach the "
        "gateway (e.g. https://mcp.example.com/mcp), so that challenges and metadata name it; set public_url "
        "(MCP_AGGREGATOR_PUBLIC_URL) or listen on 127.0.0.1"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def stdio(args: argparse.Namespace) -> int:
    settings, servers = load(args)
    configure_logging(settings.log_level)
    token = os.environ.get(TOKEN_VARIABLE)
    if refusal := _refuse_stdio_caller(settings, token, args.insecure_dev, args.config):
        print(f"mcp-aggregator: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    refusals: list[str] = []

    async def run() -> None:
        # The caller's identity is checked before any upstream starts: a refused token is one line
        # at once, not a stalled start.
        try:
            principal = await _stdio_principal(settings, token)
        except AuthenticationError as error:
            refusals.append(error.reason)
            return
        current_principal.set(principal)
        gateway = build_gateway(settings, servers, tracing_from(load_tracing_settings()))
        async with gateway.running():
            # Hosts list tools right after connecting and may never ask again: let the first
            # connection attempts finish (an unreachable upstream fails fast; a hung one is bounded).
            await gateway.pool.settle()
            async with stdio_server() as (read, write):
                await gateway.server.run(read, write, gateway.server.create_initialization_options())

    anyio.run(run)
    if refusals:
        print(f"mcp-aggregator: {TOKEN_VARIABLE} is not accepted: {refusals[0]}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _refuse_stdio_caller(settings: Settings, token: str | None, insecure_dev: bool, config: Path | None) -> str | None:
    """Why `stdio` cannot identify its caller with these settings, or None (checked before anything starts)."""
    if (token and settings.auth.enabled) or insecure_dev:
        return None
    if not settings.auth.enabled:
        source = str(config) if config is not None else "the settings"
        return (
            f"{source} configures no token verifier (auth.gateway_keys or auth.oidc_issuers), so the caller "
            f"cannot be identified; on your own machine pass --insecure-dev (the caller may then do everything), "
            f"or use settings with a verifier and set {TOKEN_VARIABLE}"
        )
    return f"set {TOKEN_VARIABLE} to a gateway token (e.g. from `mcp-aggregator token mint`)"


async def _stdio_principal(settings: Settings, token: str | None) -> Principal:
    """stdio has no HTTP headers: the caller's identity is a token in the environment (or --insecure-dev).

    Verified with a verifier of its own (an OIDC issuer's keys come over HTTP), before the gateway
    and its upstreams start.
    """
    if token and settings.auth.enabled:
        async with httpx2.AsyncClient(trust_env=False) as http:
            verifier = TokenVerifier(settings.auth, http, RevocationList(settings.data_dir / "revoked.json"))
            return await verifier.verify(token)
    logger.warning("gateway.insecure_dev", extra={"detail": "stdio caller is unrestricted"})
    return INSECURE_DEV_PRINCIPAL
