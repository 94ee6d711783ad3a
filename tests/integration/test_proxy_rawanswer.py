"""Small answers written as raw bytes to the client (guard.http.answers): byte-exact body, hop-by-hop
headers dropped, keep-alive kept; HTTP/1.0 answered and closed; HEAD answered without a body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.proxy_fakes import RunningGuard, start_guard, write_settings

BODY = b'{"kind":"Pod","metadata":{"name":"p"}}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Keep: yes\r\nX-Drop: no\r\n"
          b"Connection: X-Drop\r\nKeep-Alive: timeout=5\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
REVIEW = (b'{"status":{"authenticated":true,"user":{"username":"alice","groups":["team-a"]}}}')


class _Api(asyncio.Protocol):
    """Answers every request with ANSWER (TokenReviews with REVIEW), keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if b"tokenreviews" in head:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.buffer = self.buffer[length:]
                self.transport.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(REVIEW), REVIEW))
            elif b"/early/" in head:  # interim answers first, as an api-server behind a CDN might
                self.transport.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                                     b"HTTP/1.1 100 Continue\r\n\r\n" + ANSWER)
            elif head.startswith(b"HEAD "):
                self.transport.write(ANSWER[:-len(BODY)])  # the head only, as a server answers HEAD
            else:
                self.transport.write(ANSWER)


@pytest.fixture
async def guard(tmp_path: Path) -> AsyncIterator[RunningGuard]:
    server = await asyncio.get_running_loop().create_server(_Api, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    running = await start_guard(write_settings(tmp_path, [f"http://127.0.0.1:{port}"]))
    yield running
    await running.server.stop()
    server.close()


async def _exchange(url: str, request: bytes, answers: int = 1) -> tuple[list[bytes], bool]:
    """Send `request` (maybe several pipelined); return each answer's head+body, and whether the
    connection is still open afterwards."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    out = []
    for _ in range(answers):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        out.append(head + await reader.readexactly(length))
    try:
        open_after = await asyncio.wait_for(reader.read(1), 0.3) != b""
    except TimeoutError:
        open_after = True
    writer.close()
    return out, open_after


def _get(method: str = "GET", version: str = "1.1") -> bytes:
    return (f"{method} /api/v1/namespaces/a/pods/p HTTP/{version}\r\nHost: guard\r\n"
            f"Authorization: Bearer alice-token\r\n\r\n").encode()


async def test_small_answers_leave_raw_and_keep_the_connection(guard: RunningGuard) -> None:
    """Three pipelined GETs: each answer is the upstream's body and end-to-end headers, written
    raw (no aiohttp Server header), without hop-by-hop ones, and the connection stays open."""
    answers, open_after = await _exchange(guard.url, _get() * 3, answers=3)
    assert open_after
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        assert lines[0] == b"http/1.1 200 ok" and body == BODY
        assert b"x-keep: yes" in lines and b"content-length: %d" % len(BODY) in lines
        assert not [x for x in lines if x.startswith((b"x-drop", b"connection", b"keep-alive", b"server"))]
        assert [x for x in lines if x.startswith(b"date: ")]


async def test_http10_is_closed_after_its_answer_and_head_gets_no_body(guard: RunningGuard) -> None:
    """HTTP/1.0 gets the whole answer, `Connection: close` and a closed connection; a HEAD answer
    keeps the upstream's Content-Length and has no body, so the next answer follows at once."""
    (answer,), open_after = await _exchange(guard.url, _get(version="1.0"))
    assert b"\r\nConnection: close\r\n" in answer and answer.endswith(BODY) and not open_after
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(_get("HEAD") + _get())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"\r\nContent-Length: %d\r\n" % len(BODY) in head and b"\r\nServer: " not in head
    second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the HEAD answer had no body
    assert second.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_interim_answers_from_the_api_server_are_not_taken_for_the_answer(guard: RunningGuard) -> None:
    """A 103 or 100 before the real answer is skipped: the client gets the 200 and its body, and the
    kept upstream connection stays in step for the next request."""
    early = _get().replace(b"/pods/p ", b"/early/p ")
    answers, open_after = await _exchange(guard.url, early + _get(), answers=2)
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") and a.endswith(BODY) for a in answers)
    assert open_after
