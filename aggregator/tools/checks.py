"""Input checks for registrations: no cloud-metadata or link-local URLs, stdio commands from an allowlist."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio.to_thread

from aggregator.errors import AccessDeniedError

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"})


async def check_url(url: str, *, allow_link_local: bool) -> None:
    """Refuse URLs that are not http(s) or that reach link-local/metadata addresses (SSRF to the cloud)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AccessDeniedError(f"'{url}' is not an http(s) URL.")
    if allow_link_local:
        return
    host = parts.hostname.lower()
    if host in _METADATA_HOSTS:
        raise AccessDeniedError(f"'{url}' points at a cloud metadata service; registration refused.")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await anyio.to_thread.run_sync(_resolve, host)
    for address in addresses:
        if address.is_link_local or address == ipaddress.ip_address("fd00:ec2::254"):
            raise AccessDeniedError(f"'{url}' resolves to the link-local address {address}; registration refused.")


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return []  # unresolvable now: the upstream will simply fail to connect and say so
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def check_command(command: str, allowlist: tuple[str, ...]) -> None:
    """Only commands an operator listed in settings (`admin_stdio_commands`) may be registered remotely."""
    if command not in allowlist:
        allowed = ", ".join(allowlist) or "none configured"
        raise AccessDeniedError(f"The stdio command '{command}' is not on the allowlist ({allowed}).")
