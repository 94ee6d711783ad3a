"""Which headers cross guard, and how a head becomes bytes. The one list of hop-by-hop headers and
the one line-break check, for requests upstream and answers to clients alike.

A `Connection` header may name headers to drop, but never `Authorization`, identity headers or what
guard adds (RFC 9110 §7.6.1 lets a hop drop what `Connection` names; a later hop that follows it
must not lose guard's own headers). Inbound `Impersonate-*` and `X-Remote-*` never go upstream as
the client sent them: guard re-adds checked ones itself. A line break inside a name or value would
split a message, so encoding refuses it. This module must never log a header value.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDictProxy

from guard.kube.errors import GuardError

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host",
})
"""Headers that describe one connection, never forwarded as received (RFC 9110 §7.6.1, plus Host,
which guard writes for the upstream it chose)."""
IDENTITY_PREFIXES: tuple[str, ...] = ("impersonate-", "x-remote-")
"""Lower-case prefixes of inbound headers that could smuggle an identity: `Impersonate-*` (guard
re-adds checked ones itself) and the api-server's requestheader defaults `X-Remote-*`."""
PROTECTED = frozenset({"authorization", "x-forwarded-for", "content-length", "content-type"})
"""Headers a client's `Connection` may never have dropped (nor anything with an identity prefix)."""
_NOT_FORWARDED = HOP_BY_HOP | {"x-forwarded-for", "expect"}
"""`Expect: 100-continue` is answered by guard itself (guard.http.server), once a request is admitted."""


class HeaderInjection(GuardError):
    """A header guard was about to send contains a line break."""


def is_identity_header(name: str) -> bool:
    """True for every inbound header that could smuggle an identity (`Impersonate-*`, `X-Remote-*`)."""
    return name.lower().startswith(IDENTITY_PREFIXES)


def asks_impersonation(headers: CIMultiDictProxy[str]) -> bool:
    """True when the request carries an `Impersonate-*` header (checked by guard.identity.impersonation)."""
    return any(name[:12].lower() == "impersonate-" for name in headers)


_TOKENS_KEPT = 256
"""Distinct `Connection` values whose parsed tokens are remembered (forgotten all at once when full):
the same one or two (`keep-alive`, `close`) come on almost every message."""
_tokens_seen: dict[tuple[str, ...], frozenset[str]] = {}


def connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names listed in `Connection`, lower-cased, minus the ones nobody may drop."""
    values = tuple(headers.getall("Connection", ()))
    found = _tokens_seen.get(values)
    if found is None:
        named = {t.strip().lower() for v in values for t in v.split(",")}
        found = frozenset(n for n in named
                          if n and n not in PROTECTED and not n.startswith(IDENTITY_PREFIXES))
        if len(_tokens_seen) >= _TOKENS_KEPT:
            _tokens_seen.clear()
        _tokens_seen[values] = found
    return found


def asks_upgrade(headers: CIMultiDictProxy[str]) -> bool:
    """True when the request asks to leave HTTP (`Connection: upgrade` with an `Upgrade` header)."""
    if "upgrade" not in headers:
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.getall("Connection", ()) for t in v.split(","))


def forwardable(inbound: CIMultiDictProxy[str], *, peer: str,
                keep_authorization: bool) -> list[tuple[str, str]]:
    """The inbound headers that go upstream: end-to-end ones (not hop-by-hop, not named by
    `Connection`, no identity header a client could forge), then X-Forwarded-For with `peer`."""
    named = connection_tokens(inbound) if "Connection" in inbound else frozenset()
    out: list[tuple[str, str]] = []
    forwarded: list[str] = []
    for key, value in inbound.items():
        lk = key.lower()
        if lk in _NOT_FORWARDED or lk in named or lk.startswith(IDENTITY_PREFIXES):
            if lk == "x-forwarded-for":
                forwarded.append(value)
            continue
        if lk == "authorization" and not keep_authorization:
            continue
        out.append((key, value))
    if peer:
        forwarded.append(peer)
    if forwarded:
        out.append(("X-Forwarded-For", ", ".join(forwarded)))
    return out


def encode(lines: Iterable[str]) -> bytes:
    """A start line and header lines as one head, ended by an empty line; HeaderInjection when a
    line carries a line break of its own."""
    lines = list(lines)
    text = "\r\n".join(lines) + "\r\n\r\n"
    breaks = len(lines) + 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise HeaderInjection("a header contains a line break")
    return text.encode("utf-8", "surrogateescape")


def request_head(method: str, target: str, host: str, headers: Iterable[tuple[str, str]], *,
                 chunked: bool) -> bytes:
    """The request line and headers for the api-server, guard's Host first."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *[f"{k}: {v}" for k, v in headers]]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return encode(lines)
