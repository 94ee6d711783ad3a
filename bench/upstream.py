"""A static upstream fast enough never to be the bottleneck: answers like an api-server would a GET
of one small pod, approves every TokenReview, holds watches open, and streams one very large
PodList for the memory-bounded LIST test.

`python -m bench.upstream --port P [--big-bytes N]`. Raw asyncio protocol (uvloop when present), no
framework, keep-alive. It never checks a token and must never be used for anything but benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Coroutine
from typing import Any, cast

POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {
        "name": "bench-pod",
        "namespace": "default",
        "uid": "5b1f0f5e-0c1a-4d1e-9b2a-3f6f1d2c4b7a",
        "resourceVersion": "4242",
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "labels": {"app": "bench", "tier": "web", "pod-template-hash": "6d4cf56db6"},
        "annotations": {"kubernetes.io/config.seen": "2024-01-01T00:00:00.000000000Z"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench-6d4cf56db6"}],
    },
    "spec": {
        "nodeName": "node-1",
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9", "resources": {}}],
        "restartPolicy": "Always",
    },
    "status": {"phase": "Running", "podIP": "10.0.0.42", "startTime": "2024-01-01T00:00:01Z"},
}
POD_BYTES = json.dumps(POD, separators=(",", ":")).encode()
BIG_PATH = b"/api/v1/pods"
USER = {"username": "bench-user", "uid": "bench-uid", "groups": ["bench", "system:authenticated"]}
TOKEN_REVIEW = {
    "kind": "TokenReview",
    "apiVersion": "authentication.k8s.io/v1",
    "status": {"authenticated": True, "user": USER},
}
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
WATCH_EVENT = json.dumps({"type": "ADDED", "object": POD}, separators=(",", ":")).encode() + b"\n"


def response(body: bytes, *, status: bytes = b"200 OK", content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


POD_RESPONSE = response(POD_BYTES)
TOKEN_REVIEW_RESPONSE = response(json.dumps(TOKEN_REVIEW).encode(), status=b"201 Created")
VERSION_RESPONSE = response(json.dumps(VERSION).encode())
OK_RESPONSE = response(b"ok", content_type=b"text/plain")
WATCH_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def big_list_parts(size: int) -> tuple[bytes, bytes, int, bytes]:
    """(head, repeated block, how many blocks, tail) of a PodList of about `size` bytes."""
    per_block = 400
    block = (POD_BYTES + b",") * per_block
    blocks = max(1, size // len(block))
    head = b'{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"4242"},"items":['
    return head, block, blocks, POD_BYTES + b"]}"


class StaticHTTP(asyncio.Protocol):
    """One keep-alive connection: parse request heads, answer from precomputed bytes."""

    big_bytes = 100 * 1000 * 1000

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.buffer = b""
        self.streaming = False
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.streaming:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.answer(head)

    def answer(self, head: bytes) -> None:
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0]
        path, _, query = target.partition(b"?")
        if b"watch=true" in query or b"watch=1" in query:
            self.streaming = True
            self.transport.write(WATCH_HEAD + chunk(WATCH_EVENT))
        elif path == BIG_PATH:
            self.streaming = True
            asyncio.get_running_loop().create_task(self.stream_big_list())
        elif method == b"POST" and path.endswith(b"/tokenreviews"):
            self.transport.write(TOKEN_REVIEW_RESPONSE)
        elif path == b"/version":
            self.transport.write(VERSION_RESPONSE)
        elif path in (b"/readyz", b"/healthz", b"/livez"):
            self.transport.write(OK_RESPONSE)
        else:
            self.transport.write(POD_RESPONSE)

    async def stream_big_list(self) -> None:
        head, block, blocks, tail = big_list_parts(self.big_bytes)
        total = len(head) + len(block) * blocks + len(tail)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (total, head)
        )
        for _ in range(blocks):
            await self.can_write.wait()
            if self.transport.is_closing():
                return
            self.transport.write(block)
        self.transport.write(tail)
        self.streaming = False


def content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    value = lower[at + 17 :].split(b"\r\n", 1)[0]
    return int(value.strip() or b"0")


async def serve(port: int, big_bytes: int) -> None:
    StaticHTTP.big_bytes = big_bytes
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StaticHTTP, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed: it is the faster event loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--big-bytes", type=int, default=100 * 1000 * 1000, help=f"size of {BIG_PATH.decode()}"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_fast(serve(args.port, args.big_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
