"""Copy an api-server's answer to the client: status, headers and body, streamed.

A small body of known length is read whole and leaves with the head in one write; a large one of
known length passes socket to socket (`client.Response.pass_through`); anything else (chunked,
watches, `logs -f`) streams chunk by chunk as it arrives. Hop-by-hop headers and those the
api-server's `Connection` names never pass (guard.http.headers). Once the head is gone the only
honest signal of a broken answer is an aborted connection. This module must never log a header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp
from aiohttp.http_writer import HttpVersion10

from guard.http import answers
from guard.http.client import Response
from guard.http.headers import connection_tokens
from guard.http.request import Request
from guard.kube.errors import UpstreamError

SMALL_BODY = 64 * 1024
"""Largest upstream body (by its Content-Length) that guard reads whole and answers with one write:
headers and body leave in one syscall, which on loopback costs as much as the rest of the request."""
BROKEN = (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)
"""What reading an answer's body raises when the api-server broke it or went silent."""


async def relay(request: Request, answer: Response, add: Iterable[tuple[str, str]], *,
                draining: Callable[[], bool] = lambda: False,
                tap: Callable[[bytes], None] | None = None) -> tuple[int, int, bytes | None]:
    """Copy status, headers and body to the client. Returns (status, body bytes sent, the body when
    it was read whole). `tap` sees every byte of a streamed body as it passes (a LIST's counter)."""
    length, status = answer.content_length, answer.status
    if (length is not None and length <= SMALL_BODY) or request.method == "HEAD" or answers.no_body(status):
        return await _whole(request, answer, add)
    headers = answer.headers
    drop = connection_tokens(headers) if "Connection" in headers else frozenset()
    http11 = request.version != HttpVersion10
    if length is None and not http11:
        request.keep_alive = False  # an HTTP/1.0 client learns the end of the body by the close
    head = answers.head(status, answer.reason, headers, add, drop=drop, length=length,
                        chunked=length is None and http11, close=not request.keep_alive)
    stream = await request.stream(head, chunked=length is None and http11)
    if length is not None:
        sink = request.write_now if tap is None else _tapped(request.write_now, tap)
        passed = answer.pass_through(sink)
        if passed is not None:
            return status, await _pass_through(request, passed, answer), None
    sent = 0
    try:
        async for chunk in answer.content.iter_any():
            if tap is not None:
                tap(chunk)
            await stream.write(chunk)
            sent += len(chunk)
    except BROKEN as e:
        if length is not None or not draining():
            raise ConnectionResetError("upstream broke the response") from e
    await stream.end()
    return status, sent, None


def _tapped(sink: Callable[[bytes], bool], tap: Callable[[bytes], None]) -> Callable[[bytes], bool]:
    def both(data: bytes) -> bool:
        tap(data)
        return sink(data)
    return both


async def _pass_through(request: Request, passed: asyncio.Future[int], answer: Response) -> int:
    """Wait for a body that goes from the upstream socket's callback straight to the client's,
    each side's flow control pausing the other (see client.Response.pass_through)."""
    request.on_writable(answer.resume)
    try:
        return await passed
    except BROKEN as e:
        raise ConnectionResetError("upstream broke the response") from e
    finally:
        request.on_writable(None)


async def _whole(request: Request, answer: Response,
                 add: Iterable[tuple[str, str]]) -> tuple[int, int, bytes | None]:
    """A small answer read whole; headers and body leave in one write."""
    try:
        body = await answer.read()
    except BROKEN as e:
        # Nothing has reached the client yet, so it can still get a proper Status.
        raise UpstreamError("the api-server broke the response") from e
    status, headers = answer.status, answer.headers
    drop = connection_tokens(headers) if "Connection" in headers else frozenset()
    await request.send(answers.whole(status, answer.reason, headers, add, body, drop=drop,
                                     head_only=request.method == "HEAD", close=not request.keep_alive))
    return status, len(body), body
