"""Send one admitted request to an api-server endpoint and stream the answer back.

Bodies flow chunk by chunk in both directions (never read whole); watches and `logs -f` reach the
client as each chunk arrives. Hop-by-hop headers are handled here, by guard: a `Connection` header can
name headers to drop, but never `Authorization`, `Impersonate-*` or anything guard adds. This module
must never log a header value.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp.http_writer import HttpVersion10
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from guard.http import answers as rawanswer
from guard.http import client as h1
from guard.http.server import Request
from guard.identity.impersonation import INBOUND_HEADER_PREFIXES_TO_STRIP as STRIPPED_PREFIXES
from guard.kube.errors import BadRequest, GuardError, ServiceUnavailable, UpstreamError
from guard.upstream.endpoints import Endpoint, Upstream

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host",
})
# Inbound headers that only guard may set upstream: the impersonation it has checked, and the
# front-proxy (requestheader) names an api-server might trust.
PROTECTED = frozenset({"authorization", "x-forwarded-for", "content-length", "content-type"})
_NOT_FORWARDED = HOP_BY_HOP | {"x-forwarded-for", "expect"}
"""`Expect: 100-continue` is answered by guard itself (h1server), once the request is admitted."""
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


def forwardable(inbound: CIMultiDictProxy[str], *, peer: str,
                keep_authorization: bool) -> list[tuple[str, str]]:
    """The inbound headers that go upstream: end-to-end ones (not hop-by-hop, not named by
    `Connection`, no identity header a client could forge), then X-Forwarded-For with `peer`."""
    named = connection_tokens(inbound) if "Connection" in inbound else frozenset()
    out: list[tuple[str, str]] = []
    forwarded: list[str] = []
    for key, value in inbound.items():
        lk = key.lower()
        if lk in _NOT_FORWARDED or lk in named or lk.startswith(STRIPPED_PREFIXES):
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


async def _counted(content: aiohttp.StreamReader, max_bytes: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        yield chunk


async def send(upstream: Upstream, request: Request, out: Outbound,
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


async def lean_body(request: Request, max_bytes: int) -> tuple[h1.Body, bool]:
    """(body, chunked) for the lean client: a small body of known length read whole (it leaves with
    the head in one write), anything else as a stream; chunked when the client sent no length."""
    if not request.body_exists:
        return None, False
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    request.continue_()  # admitted: a client waiting on `Expect: 100-continue` may send its body now
    if length is not None and length <= SMALL_BODY:
        return await request.read(), False
    return _counted(request.content, max_bytes), length is None


def request_head(method: str, target: str, host: str, headers: list[tuple[str, str]], *,
                 chunked: bool) -> bytes:
    """The request line and headers as bytes. A line break inside a name or value (only guard's own
    additions could carry one; llhttp rejects them inbound) would split the request."""
    text = f"{method} {target} HTTP/1.1\r\nHost: {host}" + "".join(
        [f"\r\n{k}: {v}" for k, v in headers]) + (
        "\r\nTransfer-Encoding: chunked\r\n\r\n" if chunked else "\r\n\r\n")
    lines = len(headers) + (4 if chunked else 3)
    if text.count("\n") != lines or text.count("\r") != lines:
        raise BadRequest("a header contains a line break")
    return text.encode("utf-8", "surrogateescape")


async def send_lean(upstream: Upstream, request: Request, headers: list[tuple[str, str]],
                    body: h1.Body, *, chunked: bool,
                    read_timeout: float | None) -> tuple[Endpoint, h1.Response]:
    """`send` over guard's own HTTP/1.1 pools (guard.http.client): same endpoint choice and retries."""
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


async def relay(request: Request, answer: Answer, add: Iterable[tuple[str, str]], *,
                draining: Callable[[], bool] = lambda: False) -> tuple[int, int, bytes | None]:
    """Copy status, headers and body to the client. Returns (status, body bytes sent, the body when
    it was read whole).

    A small body of known length is read whole and sent with the headers in one write; anything
    else (chunked, watches, large LISTs) streams chunk by chunk as it arrives."""
    length, status = answer.content_length, answer.status
    if (length is not None and length <= SMALL_BODY) or request.method == "HEAD" or rawanswer.no_body(status):
        return await _whole(request, answer, add)
    headers = answer.headers
    drop = connection_tokens(headers) if "Connection" in headers else frozenset()
    http11 = request.version != HttpVersion10
    if length is None and not http11:
        request.keep_alive = False  # an HTTP/1.0 client learns the end of the body by the close
    head = rawanswer.head(status, answer.reason, headers, add, drop=drop, length=length,
                          chunked=length is None and http11, close=not request.keep_alive)
    stream = await request.stream(head, chunked=length is None and http11)
    if isinstance(answer, h1.Response) and length is not None:
        passed = answer.pass_through(request.write_now)
        if passed is not None:
            return status, await _pass_through(request, passed, answer), None
    sent = 0
    try:
        async for chunk in answer.content.iter_any():
            await stream.write(chunk)
            sent += len(chunk)
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
        if length is not None or not draining():
            # Headers are gone already: the only honest signal left is an aborted connection.
            raise ConnectionResetError("upstream broke the response") from e
    await stream.end()
    return status, sent, None


async def _pass_through(request: Request, passed: asyncio.Future[int], answer: h1.Response) -> int:
    """Wait for a body that goes from the upstream socket's callback straight to the client's,
    each side's flow control pausing the other (see h1.Response.pass_through)."""
    request.on_writable(answer.resume)
    try:
        return await passed
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
        raise ConnectionResetError("upstream broke the response") from e
    finally:
        request.on_writable(None)


async def _whole(request: Request, answer: Answer,
                 add: Iterable[tuple[str, str]]) -> tuple[int, int, bytes | None]:
    """A small answer read whole; headers and body leave in one write."""
    try:
        body = await answer.read()
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
        # Nothing has reached the client yet, so it can still get a proper Status.
        raise UpstreamError("the api-server broke the response") from e
    status, headers = answer.status, answer.headers
    drop = connection_tokens(headers) if "Connection" in headers else frozenset()
    await request.send(rawanswer.whole(status, answer.reason, headers, add, body, drop=drop,
                                       head_only=request.method == "HEAD", close=not request.keep_alive))
    return status, len(body), body
