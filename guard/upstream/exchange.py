"""One exchange with a cluster: choose an endpoint, hold an in-flight slot on it, send the request,
and hand the answer to the caller until it is done with it — for ordinary, streamed and upgrade
requests alike.

A request is tried on another endpoint when nothing reached the api-server (the connection could
not be opened), or, for bodiless safe requests, when a pooled connection broke before any answer.
Every failure of guard's HTTP client becomes a GuardError here, in one place: a timeout is 503, a
broken or invalid exchange 502, no reachable endpoint 503. The request body streams, bounded by
`limits.maxBodyBytes`. This module must never log a header value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp

from guard.http import client
from guard.http.request import Request
from guard.kube.errors import GuardError, ServiceUnavailable, UpstreamError
from guard.upstream.endpoints import Endpoint, Upstream

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHUNK = 64 * 1024
SMALL_BODY = 64 * 1024
"""Largest request body (by its Content-Length) read whole, to leave with the head in one write."""


class PayloadTooLarge(GuardError):
    code = 413
    reason = "RequestEntityTooLarge"


class Outbound(NamedTuple):
    """What guard sends upstream: the request as the api-server should see it."""

    method: str
    target: str
    """Path and query, still encoded, relative to the endpoint's base path."""
    headers: list[tuple[str, str]]
    """Already filtered (guard.http.headers.forwardable) and with guard's own added."""
    body: client.Body = None
    chunked: bool = False
    read_timeout: float | None = None
    """Seconds the api-server may stay silent; None for watches, logs and tunnels."""

    @property
    def replayable(self) -> bool:
        """Whether sending it twice is harmless (a safe method, no streamed body)."""
        return self.method in SAFE_METHODS and (self.body is None or isinstance(self.body, bytes))


class Exchange:
    """`async with Exchange(upstream, out) as answer:` — the api-server's answer to `out`, with the
    endpoint's in-flight slot held until the block is left (the answer is then released: its
    connection pooled when read whole). A class rather than a generator-based context manager:
    it runs once per request."""

    __slots__ = ("_out", "_response", "_slot", "_upstream")

    def __init__(self, upstream: Upstream, out: Outbound) -> None:
        self._upstream, self._out = upstream, out

    async def __aenter__(self) -> client.Response:
        upstream, out = self._upstream, self._out
        tried: list[Endpoint] = []
        for _ in range(len(upstream.endpoints) + 1):
            ep = upstream.pick(tried)
            if ep is None:
                break
            slot = ep.slot()
            slot.__enter__()
            try:
                self._response = await ep.request(out.method, out.target, out.headers, out.body,
                                                  chunked=out.chunked, read_timeout=out.read_timeout,
                                                  retry_stale=out.replayable)  # the breaker hears it
            except BaseException as e:
                slot.__exit__()
                if not _retried(ep, e, out, tried, len(upstream.endpoints)):
                    raise
                continue
            self._slot = slot
            return self._response
        raise ServiceUnavailable(f"no api-server of cluster {upstream.name} is reachable", retry_after=1)

    async def __aexit__(self, *_: object) -> None:
        self._response.release()
        self._slot.__exit__()


def _retried(ep: Endpoint, error: BaseException, out: Outbound, tried: list[Endpoint],
             endpoints: int) -> bool:
    """True when `error` leaves the request free to try another endpoint (noted in `tried`); else
    raises the GuardError the client gets for it (other exceptions propagate as they are)."""
    if isinstance(error, client.ConnectFailed):
        tried.append(ep)
        return True
    if isinstance(error, client.ConnectionBroken):
        if not out.replayable:
            raise UpstreamError(f"api-server {ep.origin} broke the connection") from error
        if endpoints > 1:
            tried.append(ep)
        return True
    if isinstance(error, TimeoutError):
        raise ServiceUnavailable(f"api-server {ep.origin} did not answer in time", retry_after=1) from error
    if isinstance(error, client.BadResponse | aiohttp.ClientError):
        raise UpstreamError(f"api-server {ep.origin}: {type(error).__name__}") from error
    return False


async def request_body(request: Request, max_bytes: int) -> tuple[client.Body, bool]:
    """(body, chunked): a small body of known length read whole (it leaves with the head in one
    write), anything else as a stream; chunked when the client sent no length."""
    if not request.body_exists:
        return None, False
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    request.continue_()  # admitted: a client waiting on `Expect: 100-continue` may send its body now
    if length is not None and length <= SMALL_BODY:
        return await request.read(), False
    return _counted(request, max_bytes), length is None


async def _counted(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        yield chunk
