"""The caller's identity as HTTP header values: one encoding, safe on a connection every caller shares.

An upstream whose config lists `identity_headers` learns who is calling from plain headers
(`X-User`, `X-Scopes`, ...). Their names are fixed by the operator's config; their values come
from the caller's token, so they are encoded before they touch the upstream's shared connection:

- a value made only of ASCII letters, digits and ``!#$&'()*+-./:<=>?@[]^_`{|}~`` is sent as it
  is (`X-User: alice`, `X-User: alice@example.com`);
- every other character (space, ``" % , ; \\``, control characters, and all non-ASCII text) is
  sent as the `%XX` escapes of its UTF-8 bytes (`X-User: %C3%A9lodie` for `élodie`), the
  percent-encoding RFC 8187 uses, without its `UTF-8''` prefix so the header keeps its name.

Any percent-decoder (`urllib.parse.unquote`, `decodeURIComponent`) gives the value back exactly.
Lists are their encoded items joined by one separator the encoding never produces: scopes by a
space (`X-Scopes: mcp/read mcp/write`), tools by a comma. The encoding is total, so no value can
make a request malformed; a value too long to send is refused for that caller's request only
(`check_identity`), before the request enters the shared session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote

from aggregator.errors import LimitExceededError
from aggregator.policy.principal import Principal

MAX_HEADER_BYTES = 4096
"""The longest encoded identity header value sent upstream (common proxies allow 8 KiB per header line)."""
MAX_TOTAL_BYTES = 8192
"""The most encoded identity bytes on one request (common servers allow 16 KiB of headers in all)."""

_SENT_AS_IS = "!#$&'()*+-./:<=>?@[]^_`{|}~"  # with letters and digits, which `quote` always keeps


def encode_header_value(value: str) -> str:
    """`value` in the identity headers' encoding (module docstring); defined for every `str`.

    Lone surrogates (which only a hand-made JSON string can hold) pass as their UTF-8-style
    bytes, so even they cannot break a request; a principal never holds one (`Principal`).
    """
    return quote(value, safe=_SENT_AS_IS, encoding="utf-8", errors="surrogatepass")


def encode_list(values: Iterable[str], separator: str) -> str:
    """`values` sorted, encoded and joined by `separator` (a space or a comma, both always escaped inside items)."""
    return separator.join(encode_header_value(value) for value in sorted(values))


def identity_values(principal: Principal, scopes: Iterable[str], server: str, tools: Iterable[str]) -> dict[str, str]:
    """Every identity header (mcp-gateway-registry's names) with its encoded value for `principal`.

    `scopes` are the principal's effective scopes; `tools` the tools the request calls (none, one,
    or several for a batch through the nginx passthrough), in the order they are called.
    """
    return {
        "X-User": encode_header_value(principal.subject),
        "X-Username": encode_header_value(principal.subject),
        "X-Client-Id": encode_header_value(principal.client_id),
        "X-Scopes": encode_list(scopes, " "),
        "X-Auth-Method": encode_header_value(principal.auth_method.value),
        "X-Server-Name": encode_header_value(server),
        "X-Tool-Name": ",".join(dict.fromkeys(encode_header_value(tool) for tool in tools)),
    }


def check_identity(server: str, headers: Mapping[str, str]) -> None:
    """Refuse (`LimitExceededError`, to this caller only) identity headers too long to send to `server`.

    An upstream (or a proxy before it) answers an oversized header block with an HTTP error, and
    on some transports that error ends the session every caller shares; so it is never sent.
    """
    for name, value in headers.items():
        if len(value) > MAX_HEADER_BYTES:
            raise LimitExceededError(
                f"Your identity cannot be sent to upstream '{server}': its {name} header would be "
                f"{len(value)} bytes once encoded, over the limit of {MAX_HEADER_BYTES}."
            )
    if (total := sum(len(value) for value in headers.values())) > MAX_TOTAL_BYTES:
        raise LimitExceededError(
            f"Your identity cannot be sent to upstream '{server}': its identity headers would be "
            f"{total} bytes together once encoded, over the limit of {MAX_TOTAL_BYTES}."
        )
