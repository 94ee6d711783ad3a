"""A canned api-server for the fleet simulation: one process answers for every simulated cluster.

`python -m chaos.fleet_upstream --port P` prints `listening P` and answers, on keep-alive
connections, a TokenReview with the user its token names (`fleet:<user>:<group>` becomes user
`<user>` in groups `<group>` and `system:authenticated`; anything else is not authenticated),
`/readyz`, `/livez`, `/healthz` and `/version`, and every other request with one small pod.
It does nothing an api-server's behaviour would need (no storage, no RBAC): the fleet run measures
guard and Redis, and this upstream must cost as little CPU as possible. Never use it elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import cast

POD = json.dumps({
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "fleet-pod", "namespace": "default", "resourceVersion": "1"},
    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
    "status": {"phase": "Running"},
}, separators=(",", ":")).encode()
VERSION = b'{"major":"1","minor":"32","gitVersion":"v1.32.0"}'
TOKEN_PREFIX = "fleet:"


def answer(body: bytes, status: bytes = b"200 OK", content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


POD_ANSWER = answer(POD)
VERSION_ANSWER = answer(VERSION)
OK_ANSWER = answer(b"ok", content_type=b"text/plain")


def token_of(user: str, group: str) -> str:
    """The bearer token this upstream reads as `user` in `group`."""
    return f"{TOKEN_PREFIX}{user}:{group}"


def review(body: bytes) -> bytes:
    """The TokenReview answer for a review request's body."""
    try:
        token = str(json.loads(body)["spec"]["token"])
    except (ValueError, KeyError, TypeError):
        token = ""
    status: dict[str, object] = {"authenticated": False}
    if token.startswith(TOKEN_PREFIX) and token.count(":") == 2:
        _, user, group = token.split(":")
        status = {"authenticated": True,
                  "user": {"username": user, "uid": user, "groups": [group, "system:authenticated"]}}
    reply = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "status": status}
    return answer(json.dumps(reply).encode(), b"201 Created")


def content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    return int(head[at + 17:].split(b"\r\n", 1)[0].strip() or b"0")


class Canned(asyncio.Protocol):
    """One keep-alive connection: parse request heads, answer from precomputed bytes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(self.respond(head, body))

    @staticmethod
    def respond(head: bytes, body: bytes) -> bytes:
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"POST" and path.endswith(b"/tokenreviews"):
            return review(body)
        if path == b"/version":
            return VERSION_ANSWER
        if path in (b"/readyz", b"/healthz", b"/livez"):
            return OK_ANSWER
        return POD_ANSWER


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.fleet_upstream",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
