"""Which network addresses an upstream registered through a tool call may reach (SSRF).

A URL that arrives through `register_service` is caller input: it must not turn the gateway into a
proxy to its own host, its private network or the cloud's metadata service. One function,
`normalise`, maps every spelling of a host to the address it denotes (integer, hex and octal IPv4,
trailing dots, IPv6 zone ids, NFKC-equivalent digits, IPv4 embedded in IPv6 as mapped, compatible,
NAT64 or 6to4 addresses, the `localhost` names); `AddressPolicy.check` decides on that address.
Only public unicast addresses pass, unless the operator allow-lists a network
(`admin_allowed_networks`); the gateway's own listeners never pass.

The decision is made on the addresses a connection actually uses: `AddressPolicy.resolve` resolves
a name and checks every address it gets (the transport then connects to one of those, and does so
again on every new connection, so a name that later resolves elsewhere is refused then).
`resolve_host` is the one place names are resolved, so tests can point a name anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

from aggregator.config.settings import Settings
from aggregator.errors import AccessDeniedError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOOPBACK = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Names clouds give their metadata services; they resolve to link-local addresses anyway, but a
# registration naming one is refused before anything resolves it.
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})
_METADATA_ADDRESSES = frozenset({_METADATA, ipaddress.IPv6Address("fd00:ec2::254")})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# inet_aton's spellings: one to four parts, each decimal, 0x-hex or 0-octal.
_IPV4_PART = r"(?:0x[0-9a-f]*|[0-9]+)"
_LEGACY_IPV4 = re.compile(rf"^{_IPV4_PART}(?:\.{_IPV4_PART}){{0,3}}$")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/%-]*")


def normalise(host: str) -> tuple[IPAddress, ...]:
    """The addresses to decide on for a host as written, IPv4 unwrapped from IPv6; () for a name that needs DNS.

    `localhost` names denote the loopback addresses and cloud metadata names the metadata address,
    whatever a resolver would say.
    """
    text = _canonical(host)
    if text in _LOOPBACK_NAMES or text.endswith(".localhost"):
        return _LOOPBACK
    if text in _METADATA_NAMES:
        return (_METADATA,)
    address = parse_address(host)
    return () if address is None else (unwrap(address),)


def parse_address(host: str) -> IPAddress | None:
    """The address a literal host spells (in any spelling, zone id dropped), or None for a name."""
    text = _canonical(host)
    try:
        return ipaddress.ip_address(re.split(r"%", text, maxsplit=1)[0] if ":" in text else text)
    except ValueError:
        return _legacy_ipv4(text)


def _canonical(host: str) -> str:
    """NFKC-folded (full-width digits are digits), lower case, without brackets or one trailing dot."""
    text = unicodedata.normalize("NFKC", host).strip().lower()
    return text.removeprefix("[").removesuffix("]").removesuffix(".")


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, translated, compatible, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    address = ipaddress.IPv6Address(address.packed)  # drops a zone id
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _TRANSLATED:
        return embedded
    if address in _COMPATIBLE and int(address) > 1:  # `::` and `::1` are themselves
        return embedded
    return address


def _legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`: what inet_aton (and so getaddrinfo) accepts."""
    if not _LEGACY_IPV4.match(text):
        return None
    values: list[int] = []
    for part in text.split("."):
        try:
            if part.startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif part.startswith("0") and len(part) > 1:
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:  # '08' is neither octal nor an address
            return None
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def category(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address ('loopback', 'private', ...), or None when it is one."""
    address = unwrap(address)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if address.is_reserved or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


@dataclass(frozen=True, slots=True)
class Listener:
    """Where the gateway (or the nginx in front of it) listens: a port, and an address or a name.

    The address 0.0.0.0 or :: stands for every address of this host.
    """

    port: int
    address: IPAddress | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The addresses upstreams registered through tool calls may connect to (from `Settings`)."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    listeners: tuple[Listener, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        """The allow-list and the gateway's own listeners (its bind address, nginx's, its public URL)."""
        listeners = [_listener(settings.host, settings.port)]
        host, _, port = settings.nginx.listen.rpartition(":")
        if port.isdigit():
            listeners.append(_listener(host or "0.0.0.0", int(port)))  # no host: nginx listens on every address
        if settings.public_url is not None:
            public = urlsplit(settings.public_url)
            if public.hostname:
                default = 443 if public.scheme == "https" else 80
                listeners.append(_listener(public.hostname, public.port or default))
        return cls(tuple(settings.admin_allowed_networks), tuple(listeners))

    def check(self, host: str, address: IPAddress, port: int) -> None:
        """Refuse (AccessDeniedError) a connection to `address`:`port`, reached through `host`, unless allowed."""
        effective = unwrap(address)
        name = host.strip("[]")
        if self._is_listener(host, effective, port):
            raise AccessDeniedError(f"{name} port {port} is this gateway's own listener; refused.")
        if any(effective in network or address in network for network in self.allowed_networks):
            return
        if (reason := category(effective)) is None:
            return
        if parse_address(host) is None and not normalise(host):  # a name: say what it resolved to
            shown = str(effective) if effective == address else f"{effective} (as {address})"
            subject = f"{name} resolves to {shown}, "
        elif str(effective) != name:
            subject = f"{name} is {effective}, "
        else:
            subject = f"{name} is "
        article = "an" if reason[0] in "aeiou" else "a"
        raise AccessDeniedError(
            f"{subject}{article} {reason} address; refused (an operator may allow it in admin_allowed_networks)."
        )

    def check_literal(self, host: str, port: int) -> None:
        """Refuse a host that is an address (in any spelling) or a reserved name that may not be used.

        Other names pass here: they are checked on every connection, when they are resolved.
        """
        for address in normalise(host):
            self.check(host, address, port)
        if self._is_listener(host, None, port):
            raise AccessDeniedError(f"{host} port {port} is this gateway's own listener; refused.")

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses a connection to `host`:`port` may use: every one is checked.

        A literal is used as it is; a name is resolved (`resolve_host`). One refused address refuses
        them all, so no happy-eyeballs race can pick the bad one.
        """
        literal = parse_address(host)
        addresses = [literal] if literal is not None else await resolve_host(host, port)
        for address in (*normalise(host), *addresses):
            self.check(host, address, port)
        return addresses

    def _is_listener(self, host: str, address: IPAddress | None, port: int) -> bool:
        name = host.strip("[]").rstrip(".").lower()
        for listener in self.listeners:
            if listener.port != port:
                continue
            if listener.name is not None:
                if listener.name == name:
                    return True
            elif address is not None and listener.address is not None:
                if listener.address.is_unspecified:
                    if address.is_loopback or _is_local(address):
                        return True
                elif unwrap(listener.address) == address or (listener.address.is_loopback and address.is_loopback):
                    return True
        return False


def unchecked_proxy_refusal(url: str, policy: AddressPolicy) -> str | None:
    """Why a proxy that resolves and connects on its own (nginx) may not be given a caller's `url`, or None.

    Such a proxy cannot check addresses at connect time and reads its config as syntax, so it gets a
    caller's URL only when the host is an address literal `policy` allows (nothing left to resolve)
    and the path holds only characters no config file gives a meaning ('$', ';', quotes, braces...).
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "its URL has an invalid port"
    address = parse_address(parts.hostname or "")
    if address is None or parts.hostname != str(address):
        return "registered with a host name, which nginx would resolve unchecked; use the aggregated endpoint"
    try:
        policy.check(parts.hostname, address, port)
    except AccessDeniedError as refusal:
        return str(refusal)
    if not _PLAIN_PATH.fullmatch(parts.path):
        return "its URL path holds characters nginx would read as syntax; use the aggregated endpoint"
    return None


def _listener(host: str, port: int) -> Listener:
    addresses = normalise(host)
    if not addresses:
        return Listener(port, name=host.strip("[]").rstrip(".").lower())
    return Listener(port, address=addresses[0])


def _is_local(address: IPAddress) -> bool:
    """Whether `address` belongs to this host (only a local address can be bound)."""
    family = socket.AF_INET if isinstance(address, ipaddress.IPv4Address) else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses the system resolver gives for `host` (OSError when it has none)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
