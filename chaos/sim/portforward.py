"""`pods/portforward`: what listens inside a simulated pod, and the WebSocket channel protocol the
official clients speak (`v4.channel.k8s.io`: per requested port a data channel 2i and an error
channel 2i+1, each opened by a frame holding the port number, little-endian).

A pod listens on its containers' declared ports, on port numbers its command names (a test's
echo server) and on 80 when its image is nginx; an HTTP port answers nginx's welcome page, any
other echoes what it receives. A port nothing listens on gets the kubelet's "connection refused"
on its error channel. kubectl's SPDY framing lives in `chaos.sim.spdy`. It must never open a real
socket to anything: every "connection" is a `Conversation` in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from chaos.sim.filesystem import Filesystem

PROTOCOLS = ("v4.channel.k8s.io", "v5.channel.k8s.io", "SPDY/3.1+portforward.k8s.io")
WELCOME = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n"
    b"<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully "
    b"installed and\nworking.</p>\n</body>\n</html>\n"
)


HTML_ROOT = "/usr/share/nginx/html"
NOT_FOUND = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n</body>\r\n</html>\r\n"
)


class Conversation:
    """One TCP connection to a port in the pod: bytes in, bytes out."""

    def __init__(self, http: bool, files: Filesystem | None = None) -> None:
        self.http = http
        self.files = files
        self.buffer = b""

    def receive(self, data: bytes) -> bytes:
        if not self.http:
            return data
        self.buffer += data
        answer = b""
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            path = ([*head.split(b" "), b"/", b"/"])[1].decode(errors="replace").split("?")[0]
            answer += self._answer(path)
        return answer

    def _answer(self, path: str) -> bytes:
        """nginx's: the welcome page at /, files under its html root, 404 elsewhere."""
        status, body = "200 OK", WELCOME
        if path not in ("/", "/index.html"):
            fs, file = self.files, posixpath.normpath(HTML_ROOT + path)
            if fs is not None and fs.is_file(file):
                body = fs.read(file)
            else:
                status, body = "404 Not Found", NOT_FOUND
        head = (
            f"HTTP/1.1 {status}\r\nServer: nginx/1.27.3\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        )
        return head.encode() + body


CHUNK = 32 * 1024
"""The kubelet copies a connection's bytes in buffers of this size; clients cap message sizes."""


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def listening(pod: dict[str, Any]) -> dict[int, bool]:
    """Port -> whether it speaks HTTP, for every port something in the pod listens on."""
    ports: dict[int, bool] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        nginx = "nginx" in str(container.get("image", ""))
        if nginx:
            ports[80] = True
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                ports.setdefault(port["containerPort"], nginx)
        for word in [*(container.get("command") or []), *(container.get("args") or [])]:
            if str(word).isdigit() and 0 < int(word) < 65536:
                ports.setdefault(int(word), False)
    return ports


def refused(pod: dict[str, Any], port: int) -> str:
    uid = (pod.get("metadata") or {}).get("uid", "")
    return (
        f"error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network "
        f'namespace "/var/run/netns/cni-sim": failed to connect to localhost:{port} inside namespace '
        f'"{uid}", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 '
        f"[::1]:{port}: connect: connection refused "
    )


def requested_ports(request: web.Request) -> list[int]:
    ports: list[int] = []
    for value in [*request.query.getall("ports", []), *request.query.getall("port", [])]:
        ports.extend(int(p) for p in value.split(",") if p.strip().isdigit())
    return ports


async def serve(
    request: web.Request,
    pod: dict[str, Any],
    spdy: Callable[..., Any] | None,
    files: Filesystem | None = None,
) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=PROTOCOLS)
    if not ws.can_prepare(request).ok:
        if spdy is not None and request.headers.get("Upgrade", "").lower().startswith("spdy/"):
            return await spdy(request, pod, files=files)
        return web.Response(status=400, text="Upgrade request required")
    await ws.prepare(request)
    if ws.ws_protocol == PROTOCOLS[2] and spdy is not None:
        return await spdy(request, pod, ws=ws, files=files)
    await _channels(ws, pod, requested_ports(request), files)
    return ws


async def _channels(
    ws: web.WebSocketResponse, pod: dict[str, Any], ports: list[int], files: Filesystem | None
) -> None:
    listeners = listening(pod)
    conversations: dict[int, Conversation] = {}
    with contextlib.suppress(ConnectionError):
        for i, port in enumerate(ports):
            for channel in (2 * i, 2 * i + 1):
                await ws.send_bytes(bytes([channel]) + port.to_bytes(2, "little"))
            if port in listeners:
                conversations[i] = Conversation(listeners[port], files)
            else:
                await ws.send_bytes(bytes([2 * i + 1]) + refused(pod, port).encode())
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], bytes(msg.data[1:])
            conversation = conversations.get(channel // 2)
            if conversation is not None and channel % 2 == 0 and payload:
                for chunk in chunks(conversation.receive(payload)):
                    await ws.send_bytes(bytes([channel]) + chunk)
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        await ws.close()
