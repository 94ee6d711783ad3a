"""Answers as bytes: the status line, headers and (for a whole answer) the body, ready for one
`transport.write` by guard.http.server.

Three kinds: a whole upstream answer (`whole`), the head of an answer whose body streams after it
(`head`), and guard's own Status answers (`status`). Hop-by-hop headers, and those the upstream's
`Connection` names (`drop`; guard.upstream.exchange decides which may be dropped), never pass. A HEAD request
gets the head only, with the upstream's own Content-Length; 1xx, 204 and 304 carry no body. An answer
that ends the connection says `Connection: close`. A line break inside a header (only guard's own
additions could carry one: llhttp rejects them from the api-server) would split the answer, so it
raises instead. This module must never log a header.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus

from aiohttp.helpers import rfc822_formatted_time
from multidict import CIMultiDictProxy

from guard.http.headers import HOP_BY_HOP, encode
from guard.kube.errors import GuardError

_SKIP = HOP_BY_HOP | {"content-length"}
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def no_body(status: int) -> bool:
    return status < 200 or status in (204, 304)


def _lines(status: int, reason: str | None, headers: CIMultiDictProxy[str] | None,
           add: Iterable[tuple[str, str]], drop: frozenset[str], *, keep_length: bool) -> list[str]:
    lines = [f"HTTP/1.1 {status} {reason or _PHRASES.get(status, '')}"]
    dated = False
    if headers is not None:
        for key, value in headers.items():
            lk = key.lower()
            if (lk in _SKIP and not (keep_length and lk == "content-length")) or lk in drop:
                continue
            dated = dated or lk == "date"
            lines.append(f"{key}: {value}")
    lines.extend([f"{k}: {v}" for k, v in add])
    if not dated:
        lines.append(f"Date: {rfc822_formatted_time()}")
    return lines


def whole(status: int, reason: str | None, headers: CIMultiDictProxy[str] | None,
          add: Iterable[tuple[str, str]], body: bytes, *, drop: frozenset[str] = frozenset(),
          head_only: bool = False, close: bool = False) -> bytes:
    """A whole answer. `head_only`: the request was HEAD (the upstream's Content-Length stays)."""
    lines = _lines(status, reason, headers, add, drop, keep_length=head_only)
    if not head_only and not no_body(status):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    data = encode(lines)
    return data if head_only or no_body(status) else data + body


def head(status: int, reason: str | None, headers: CIMultiDictProxy[str],
         add: Iterable[tuple[str, str]], *, drop: frozenset[str], length: int | None,
         chunked: bool, close: bool) -> bytes:
    """The head of a streamed answer: its length when known, else chunked (or ended by closing)."""
    lines = _lines(status, reason, headers, add, drop, keep_length=False)
    if length is not None:
        lines.append(f"Content-Length: {length}")
    elif chunked:
        lines.append("Transfer-Encoding: chunked")
    if close:
        lines.append("Connection: close")
    return encode(lines)


def status(error: GuardError, *, close: bool = False, head_only: bool = False) -> bytes:
    """guard's own answer for `error`: a Kubernetes Status, with Retry-After and the error's own
    headers (a rejection's RateLimit headers)."""
    add = [("Content-Type", "application/json")]
    if error.retry_after is not None:
        add.append(("Retry-After", str(error.retry_after)))
    add.extend(error.headers)
    body = json.dumps(error.status()).encode()
    return whole(error.code, None, None, add, body, close=close, head_only=False) if not head_only \
        else whole(error.code, None, None, [*add, ("Content-Length", str(len(body)))], b"", head_only=True,
                   close=close)
