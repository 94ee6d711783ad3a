"""A watch whose client leaves while the watch is idle closes its upstream connection at once
(guard.http.server cancels its handler), rather than when the api-server next sends an event."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.proxy_fakes import start_guard, write_settings

REVIEW = b'{"status":{"authenticated":true,"user":{"username":"alice","groups":["team-a"]}}}'
WATCHES = 40


class _Api(asyncio.Protocol):
    """Answers TokenReviews; starts every watch with one event and then never writes again."""

    open = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""
        _Api.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        _Api.open -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if b"tokenreviews" in head:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.buffer = self.buffer[length:]
                self.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (
                    len(REVIEW), REVIEW))
            else:
                event = b'{"type":"ADDED"}\n'
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(event), event))


async def _count_settles(read: object, want: int) -> int:
    """Poll a count until it equals `want` (or give up after a generous while); return the last."""
    assert callable(read)
    for _ in range(200):
        if read() == want:
            break
        await asyncio.sleep(0.05)
    return int(read())


async def test_idle_watches_whose_clients_leave_close_their_upstream_connections(tmp_path: Path) -> None:
    """40 idle watches open 40 upstream connections; when the 40 clients hang up, guard closes all
    40 upstream connections and its endpoint counts none in flight, with no event ever sent; each
    watch is counted as 499 (the client left), none as a 500."""
    server = await asyncio.get_running_loop().create_server(_Api, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    guard = await start_guard(write_settings(tmp_path, [f"http://127.0.0.1:{port}"]))
    host, guard_port = guard.url.removeprefix("http://").rsplit(":", 1)
    request = (b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: guard\r\n"
               b"Authorization: Bearer alice-token\r\n\r\n")
    clients = []
    try:
        for _ in range(WATCHES):
            reader, writer = await asyncio.open_connection(host, int(guard_port))
            writer.write(request)
            await asyncio.wait_for(reader.readuntil(b"ADDED"), 5)
            clients.append(writer)
        endpoint = guard.server.serving.runtime.upstream.endpoints[0]
        assert (_Api.open, endpoint.in_flight) == (WATCHES + 1, WATCHES)  # + the TokenReview's
        for writer in clients:
            writer.close()
        assert await _count_settles(lambda: endpoint.in_flight, 0) == 0
        assert await _count_settles(lambda: _Api.open, 1) == 1  # only the pooled TokenReview one
        answered = guard.server.metrics.requests.answered  # logged as the client leaving, not an error
        assert sum(n for (_, _, code), n in answered.items() if code == "499") == WATCHES
        assert [key for key in answered if key[2] == "500"] == []
    finally:
        await guard.server.stop()
        server.close()
