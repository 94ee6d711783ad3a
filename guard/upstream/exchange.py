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
from contextlib import asynccontextmanager
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Outbound:
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


@asynccontextmanager
async def exchange(upstream: Upstream, out: Outbound) -> AsyncIterator[client.Response]:
    """The api-server's answer to `out`, with the endpoint's in-flight slot held until the caller
    leaves the block (the answer is then released: its connection pooled when read whole)."""
    tried: list[Endpoint] = []
    for _ in range(len(upstream.endpoints) + 1):
        ep = upstream.pick(tried)
        if ep is None:
            break
        with ep.slot():
            try:
                response = await ep.request(out.method, out.target, out.headers, out.body,
                                            chunked=out.chunked, read_timeout=out.read_timeout,
                                            retry_stale=out.replayable)  # the breaker hears the outcome
            except client.ConnectFailed:
                tried.append(ep)
                continue
            except client.ConnectionBroken as e:
                if not out.replayable:
                    raise UpstreamError(f"api-server {ep.origin} broke the connection") from e
                if len(upstream.endpoints) > 1:
                    tried.append(ep)
                continue
            except TimeoutError as e:
                raise ServiceUnavailable(f"api-server {ep.origin} did not answer in time",
                                         retry_after=1) from e
            except (client.BadResponse, aiohttp.ClientError) as e:
                raise UpstreamError(f"api-server {ep.origin}: {type(e).__name__}") from e
            try:
                yield response
            finally:
                response.release()
            return
    raise ServiceUnavailable(f"no api-server of cluster {upstream.name} is reachable", retry_after=1)


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
