"""Send one admitted request to an api-server endpoint and stream the answer back.

Bodies flow chunk by chunk in both directions (never read whole); watches and `logs -f` reach the
client as each chunk arrives. Hop-by-hop headers are handled here, by guard: a `Connection` header can
name headers to drop, but never `Authorization`, `Impersonate-*` or anything guard adds. This module
must never log a header value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from guard import h1, rawanswer
from guard.errors import BadRequest, GuardError, ServiceUnavailable, UpstreamError
from guard.impersonation import INBOUND_HEADER_PREFIXES_TO_STRIP as STRIPPED_PREFIXES
from guard.rawanswer import RawAnswer
from guard.upstream import Endpoint, Upstream

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host",
})
# Inbound headers that only guard may set upstream: the impersonation it has checked, and the
# front-proxy (requestheader) names an api-server might trust.
PROTECTED = frozenset({"authorization", "x-forwarded-for", "content-length", "content-type"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHUNK = 64 * 1024
SMALL_BODY = 64 * 1024
"""Largest upstream body (by its Content-Length) that guard reads whole and answers with one write:
headers and body leave in one syscall, which on loopback costs as much as the rest of the request."""


class PayloadTooLarge(GuardError):
    code = 413
    reason = "RequestEntityTooLarge"


@dataclass(frozen=True)
class Outbound:
    """What guard sends upstream: headers already filtered, plus the request's timeout class."""

    headers: CIMultiDict[str]
    timeout: aiohttp.ClientTimeout


class Answer(Protocol):
    """What `relay` reads of an upstream answer: an aiohttp ClientResponse or an h1.Response."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> StreamReader: ...
    async def read(self) -> bytes: ...


def connection_tokens(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """Header names listed in `Connection`, lower-cased, minus the ones nobody may drop."""
    named = {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",")}
    return frozenset(n for n in named if n and n not in PROTECTED and not n.startswith(STRIPPED_PREFIXES))


def request_headers(inbound: CIMultiDictProxy[str], *, peer: str, keep_authorization: bool,
                    add: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    """The headers to send upstream: end-to-end ones, X-Forwarded-For, then guard's own `add`."""
    named = connection_tokens(inbound)
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in inbound.items():
        lk = key.lower()
        if lk in HOP_BY_HOP or lk in named or lk.startswith(STRIPPED_PREFIXES) or lk == "x-forwarded-for":
            continue
        if lk == "authorization" and not keep_authorization:
            continue
        out.add(key, value)
    forwarded = list(inbound.getall("X-Forwarded-For", ()))
    if peer:
        forwarded.append(peer)
    if forwarded:
        out["X-Forwarded-For"] = ", ".join(forwarded)
    out.extend(add)
    return out


def response_headers(upstream: CIMultiDictProxy[str], add: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    named = connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in upstream.items() if k.lower() not in HOP_BY_HOP and k.lower() not in named)
    out.extend(add)
    return out


async def _counted(content: aiohttp.StreamReader, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        yield chunk


async def send(upstream: Upstream, request: web.BaseRequest, out: Outbound,
               body: AsyncIterator[bytes] | None) -> tuple[Endpoint, aiohttp.ClientResponse]:
    """Open the exchange on one endpoint, skipping endpoints that refuse connections.

    A request is retried on another endpoint when its connection could not be opened (nothing was
    sent), or, for bodiless safe requests, when a pooled connection broke before any answer.
    The caller must `release(endpoint)` and close the response.
    """
    tried: list[Endpoint] = []
    retry_broken = request.method in SAFE_METHODS and body is None
    for _ in range(len(upstream.endpoints) + 1):
        ep = upstream.pick(tried)
        if ep is None:
            break
        ep.in_flight += 1
        try:
            response = await ep.session.request(
                request.method, URL(ep.url + request.raw_path, encoded=True), headers=out.headers,
                data=body, allow_redirects=False, timeout=out.timeout, compress=None)
        except aiohttp.ClientConnectorError:
            ep.in_flight -= 1
            ep.failed("ClientConnectorError")  # guard.routing.breaker
            tried.append(ep)
            continue
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            ep.in_flight -= 1
            if not retry_broken:
                raise UpstreamError(f"api-server {ep.origin} broke the connection") from e
            if len(upstream.endpoints) > 1:
                tried.append(ep)
            continue
        except TimeoutError as e:
            ep.in_flight -= 1
            raise ServiceUnavailable(f"api-server {ep.origin} did not answer in time", retry_after=1) from e
        except aiohttp.ClientError as e:
            ep.in_flight -= 1
            raise UpstreamError(f"api-server {ep.origin}: {type(e).__name__}") from e
        ep.answered()  # guard.routing.breaker
        return ep, response
    raise ServiceUnavailable(f"no api-server of cluster {upstream.name} is reachable", retry_after=1)


async def lean_body(request: web.BaseRequest, max_bytes: int) -> tuple[h1.Body, bool]:
    """(body, chunked) for the lean client: a small body of known length read whole (it leaves with
    the head in one write), anything else as a stream; chunked when the client sent no length."""
    if not request.body_exists:
        return None, False
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    if length is not None and length <= SMALL_BODY:
        return await request.read(), False
    return _counted(request.content, max_bytes), length is None


def request_head(method: str, target: str, host: str, headers: CIMultiDict[str], *, chunked: bool) -> bytes:
    """The request line and headers as bytes. A line break inside a name or value (only guard's own
    additions could carry one; aiohttp's parser rejects them inbound) would split the request."""
    text = f"{method} {target} HTTP/1.1\r\nHost: {host}" + "".join(
        [f"\r\n{k}: {v}" for k, v in headers.items()]) + (
        "\r\nTransfer-Encoding: chunked\r\n\r\n" if chunked else "\r\n\r\n")
    lines = len(headers) + (4 if chunked else 3)
    if text.count("\n") != lines or text.count("\r") != lines:
        raise BadRequest("a header contains a line break")
    return text.encode("utf-8", "surrogateescape")


async def send_lean(upstream: Upstream, request: web.BaseRequest, headers: CIMultiDict[str],
                    body: h1.Body, *, chunked: bool,
                    read_timeout: float | None) -> tuple[Endpoint, h1.Response]:
    """`send` over guard's own HTTP/1.1 pools (guard.h1): same endpoint choice and retries."""
    tried: list[Endpoint] = []
    method = request.method
    replayable = method in SAFE_METHODS and not hasattr(body, "__aiter__")
    for _ in range(len(upstream.endpoints) + 1):
        ep = upstream.pick(tried)
        if ep is None:
            break
        head = request_head(method, ep.base_path + request.raw_path, ep.host_header, headers, chunked=chunked)
        ep.in_flight += 1
        try:
            return ep, await ep.request(method, head, body, chunked=chunked, read_timeout=read_timeout,
                                        retry_stale=replayable)  # the breaker hears the outcome
        except h1.ConnectFailed:
            ep.in_flight -= 1
            tried.append(ep)
        except h1.ConnectionBroken as e:
            ep.in_flight -= 1
            if not replayable:
                raise UpstreamError(f"api-server {ep.origin} broke the connection") from e
            if len(upstream.endpoints) > 1:
                tried.append(ep)
        except TimeoutError as e:
            ep.in_flight -= 1
            raise ServiceUnavailable(f"api-server {ep.origin} did not answer in time", retry_after=1) from e
        except (h1.BadResponse, aiohttp.ClientError) as e:
            ep.in_flight -= 1
            raise UpstreamError(f"api-server {ep.origin}: {type(e).__name__}") from e
        except BaseException:
            ep.in_flight -= 1
            raise
    raise ServiceUnavailable(f"no api-server of cluster {upstream.name} is reachable", retry_after=1)


def release(ep: Endpoint) -> None:
    ep.in_flight -= 1


async def relay(request: web.BaseRequest, upstream_response: Answer,
                add: Iterable[tuple[str, str]], *,
                draining: Callable[[], bool] = lambda: False) -> tuple[web.StreamResponse | RawAnswer, int]:
    """Copy status, headers and body to the client. Returns (response, body bytes).

    A small body of known length is read whole and sent with the headers in one write; anything
    else (chunked, watches, large LISTs) streams chunk by chunk as it arrives."""
    length = upstream_response.content_length
    if length is not None and length <= SMALL_BODY:
        return await _whole(request, upstream_response, add)
    headers = response_headers(upstream_response.headers, add)
    response = web.StreamResponse(status=upstream_response.status, reason=upstream_response.reason,
                                  headers=headers)
    await response.prepare(request)
    sent = 0
    try:
        async for chunk in upstream_response.content.iter_any():
            await response.write(chunk)
            sent += len(chunk)
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
        if not draining():
            # Headers are gone already: the only honest signal left is an aborted connection.
            raise ConnectionResetError("upstream broke the response") from e
    await response.write_eof()
    return response, sent


async def _whole(request: web.BaseRequest, upstream_response: Answer,
                 add: Iterable[tuple[str, str]]) -> tuple[web.StreamResponse | RawAnswer, int]:
    """A small answer read whole: raw bytes to the client transport when that is safe (see
    guard.rawanswer), else an aiohttp Response; either way headers and body leave in one write."""
    try:
        body = await upstream_response.read()
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
        # Nothing has reached the client yet, so it can still get a proper Status.
        raise UpstreamError("the api-server broke the response") from e
    status, upstream_headers = upstream_response.status, upstream_response.headers
    if rawanswer.fits(request, status):
        drop = connection_tokens(upstream_headers) if "Connection" in upstream_headers else frozenset()
        raw = rawanswer.serialise(status, upstream_response.reason, upstream_headers, add, body, drop=drop)
        if raw is not None:
            return raw, len(body)
    response = web.Response(status=status, reason=upstream_response.reason,
                            headers=response_headers(upstream_headers, add), body=body or None)
    return response, len(body)


