"""A small, whole upstream answer written to the client as raw bytes: status line, headers and body
in one `transport.write`, without building an aiohttp `web.Response` (its header multidict,
`_prepare_headers` and the payload writer cost more than the rest of guard's own work per request).

aiohttp's server still parses requests and runs keep-alive: the handler returns a `RawAnswer`,
the server "prepares" it (which writes the bytes) and reads `keep_alive` from it. Only an HTTP/1.1
keep-alive request with a body that may be sent (not HEAD, not 1xx/204/304) takes this path; every
other answer goes through `web.Response` as before. Hop-by-hop headers, and those the upstream's
`Connection` names, are dropped here as in `guard.forward`. This module must never log a header.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion11
from multidict import CIMultiDictProxy

DRAIN_ABOVE = 64 * 1024
"""Bytes queued in the client transport above which guard waits for the client to read."""
_SKIP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


class RawAnswer:
    """A whole answer already serialised. Duck-types what aiohttp's server calls on a handler's
    response (`prepare`, `write_eof`, `keep_alive`), plus `status` and `body` for guard."""

    __slots__ = ("_data", "body", "keep_alive", "status")

    def __init__(self, status: int, data: bytes, body: bytes) -> None:
        self.status = status
        self.body = body
        self.keep_alive = True
        self._data = data

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")  # aiohttp counts it as a reset
        transport.write(self._data)
        if transport.get_write_buffer_size() > DRAIN_ABOVE:  # a client that does not read
            await request.writer.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def fits(request: web.BaseRequest, status: int) -> bool:
    """True when `request`'s answer may be written raw: HTTP/1.1, keep-alive, a body allowed."""
    return (
        request.version == HttpVersion11
        and request.keep_alive
        and request.method != "HEAD"
        and status >= 200
        and status not in (204, 304)
    )


def serialise(status: int, reason: str | None, headers: CIMultiDictProxy[str],
              add: Iterable[tuple[str, str]], body: bytes, *, drop: frozenset[str]) -> RawAnswer | None:
    """The answer as bytes, or None when a header would need aiohttp's checks (a line break).

    `drop`: lower-cased names the upstream's `Connection` header listed (guard.forward decides
    which of them may be dropped)."""
    lines = [f"HTTP/1.1 {status} {reason or _PHRASES.get(status, '')}"]
    dated = False
    for key, value in headers.items():
        lk = key.lower()
        if lk in _SKIP or lk in drop:
            continue
        dated = dated or lk == "date"
        lines.append(f"{key}: {value}")
    lines.extend([f"{k}: {v}" for k, v in add])
    if not dated:
        lines.append(f"Date: {rfc822_formatted_time()}")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    text = "\r\n".join(lines)
    # Only guard's own additions could carry a line break (llhttp rejects them from upstream).
    breaks = len(lines) + 1
    if text.count("\n") != breaks or text.count("\r") != breaks:
        return None
    return RawAnswer(status, text.encode("utf-8", "surrogateescape") + body, body)
