"""Input checks for registrations: caller input is data, URLs reach only allowed addresses, stdio only from templates.

These are the early, clear refusals. The guarantees are kept where the input is used: registered
entries are never expanded (`aggregator.registry.models`), and every connection of a registered
upstream checks the addresses it actually uses (`aggregator.upstreams.transports`).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

import httpx2

from aggregator.config.stdio import SLOT_REFERENCE, StdioTemplate
from aggregator.errors import AccessDeniedError
from aggregator.policy.addresses import AddressPolicy, parse_address

_HOST_NAME = re.compile(r"(?i)(?!-)[a-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?")
_NOT_IN_URLS = frozenset('"<>\\^`{|}')  # RFC 3986 excludes them; a config file could read them as syntax
MAX_SLOT_VALUE = 1024
"""Longest value a caller may put into one stdio template slot, in characters."""


def check_url(url: str, addresses: AddressPolicy) -> None:
    """Refuse a URL that is not plain http(s), or whose host is an address (in any spelling) `addresses` refuses.

    The host is read both as the standard library and as the connection (httpx2) parse it, so a
    URL that the two read differently is checked for both readings. A host name passes here; its
    addresses are checked when it is resolved, on every connection.
    """
    if bad := [c for c in url if c in _NOT_IN_URLS or c.isspace() or unicodedata.category(c).startswith("C")]:
        raise AccessDeniedError(f"'{url}' holds {bad[0]!r}, which a URL may only carry percent-encoded.")
    scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        raise AccessDeniedError(f"'{url}' is not an http(s) URL.")
    default_port = 443 if scheme == "https" else 80
    try:
        split = urlsplit(url)
        if split.hostname:
            addresses.check_literal(split.hostname, split.port or default_port)
        parsed = httpx2.URL(url)
    except (ValueError, httpx2.InvalidURL) as error:
        raise AccessDeniedError(f"'{url}' is not a valid URL: {error}.") from None
    if not parsed.host:
        raise AccessDeniedError(f"'{url}' names no host.")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as it goes to the resolver
    if not _HOST_NAME.fullmatch(host) and parse_address(host) is None:
        raise AccessDeniedError(f"'{url}' does not name a valid host.")
    if parsed.userinfo or split.username is not None:
        raise AccessDeniedError(f"'{url}' carries credentials; give an upstream's credentials in servers.yaml.")
    addresses.check_literal(host, parsed.port or default_port)


def fill_template(name: str, template: StdioTemplate, values: dict[str, str]) -> list[str]:
    """The argv of stdio template `name` with the caller's `values`, each checked and kept whole.

    Every slot needs a value that fully matches its pattern; a value never becomes more than the
    one argument it is placed in, is never expanded, and may not start an argument with '-'.
    """
    if unknown := sorted(values.keys() - template.slots.keys()):
        known = ", ".join(sorted(template.slots)) or "none"
        raise AccessDeniedError(f"Template '{name}' has no slot {', '.join(map(repr, unknown))} (its slots: {known}).")
    if missing := sorted(template.slots.keys() - values.keys()):
        wanted = "; ".join(_describe_slot(slot, template) for slot in missing)
        raise AccessDeniedError(f"Template '{name}' needs a value for slot {wanted}.")
    for slot, value in values.items():
        _check_value(name, slot, value, template.slots[slot].pattern)
    argv = [template.command]
    for arg in template.args:
        if arg.startswith("{") and SLOT_REFERENCE.fullmatch(arg) and values[arg[1:-1]].startswith("-"):
            raise AccessDeniedError(f"Slot '{arg[1:-1]}' of template '{name}' may not start with '-' (an option).")
        argv.append(SLOT_REFERENCE.sub(lambda match: values[match.group(1)], arg))
    return argv


def _describe_slot(slot: str, template: StdioTemplate) -> str:
    about = template.slots[slot]
    return f"'{slot}' ({about.description + ', ' if about.description else ''}matching {about.pattern!r})"


def _check_value(template: str, slot: str, value: str, pattern: str) -> None:
    where = f"Slot '{slot}' of template '{template}'"
    if len(value) > MAX_SLOT_VALUE:
        raise AccessDeniedError(f"{where} takes at most {MAX_SLOT_VALUE} characters.")
    if any(unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp") for character in value):
        raise AccessDeniedError(f"{where} may not contain control or format characters.")
    if re.fullmatch(pattern, value) is None:
        raise AccessDeniedError(f"{where} must match {pattern!r}; {value!r} does not.")
