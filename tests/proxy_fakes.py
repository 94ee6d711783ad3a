"""A small fake api-server (real sockets, aiohttp) for the proxy tests, and guard started in-process.

The fake answers TokenReview and SubjectAccessReview like the api-server, records every other request
(method, path, headers as received), echoes request bodies by size, streams large LISTs and watches,
and echoes bytes over a WebSocket upgrade. Import: `from tests.proxy_fakes import ...`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

GUARD_TOKEN = "guard-own-token"
USERS = {
    "admin-token": {"username": "admin", "uid": "u-admin", "groups": ["system:masters"]},
    "alice-token": {"username": "alice", "uid": "u-alice", "groups": ["team-a"]},
    "mallory-token": {"username": "mallory", "uid": "u-mallory", "groups": []},
}


@dataclass
class Record:
    method: str
    path: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class FakeApiServer:
    seen: list[Record] = field(default_factory=list)
    token_reviews: int = 0
    access_reviews: int = 0
    watch_events: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    """Requests whose path contains /hold/ wait for this event before answering."""
    url: str = ""
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.access_review)
        app.router.add_get("/big", self.big)
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        self.hold.set()
        await self.watch_events.put(None)
        if self._runner is not None:
            await self._runner.cleanup()

    async def token_review(self, request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == f"Bearer {GUARD_TOKEN}"
        self.token_reviews += 1
        body = await request.json()
        user = USERS.get(body["spec"]["token"])
        status: dict[str, Any] = {"authenticated": True, "user": user} if user else {"authenticated": False}
        return web.json_response({**body, "status": status})

    async def access_review(self, request: web.Request) -> web.Response:
        self.access_reviews += 1
        body = await request.json()
        allowed = "system:masters" in body["spec"].get("groups", [])
        return web.json_response({**body, "status": {"allowed": allowed}})

    async def echo(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Record(request.method, request.path_qs, list(request.headers.items())))
        if request.query.get("watch") == "true":
            return await self.watch(request)
        if "/hold/" in request.path:
            await self.hold.wait()
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"method": request.method, "path": request.path_qs, "bodyBytes": size,
                                  "bodySha256": digest.hexdigest()},
                                 headers={"Connection": "X-Upstream-Secret", "X-Upstream-Secret": "x"})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        while (event := await self.watch_events.get()) is not None:
            await response.write(event)
        await response.write_eof()
        return response

    async def big(self, request: web.Request) -> web.StreamResponse:
        total, chunk = int(request.query["bytes"]), b"x" * (256 * 1024)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = total
        await response.prepare(request)
        sent = 0
        while sent < total:
            piece = chunk[: total - sent]
            await response.write(piece)
            sent += len(piece)
        return response

    async def exec(self, request: web.Request) -> web.WebSocketResponse:
        self.seen.append(Record(request.method, request.path_qs, list(request.headers.items())))
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(b"\x01" + msg.data[1:])
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        return ws


class GuardProcess:
    """`guard serve` as a child process (signals and RSS are per process)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.url = self.admin = ""
        self.stderr_lines: list[str] = []

    async def start(self) -> GuardProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guard.cli", "serve", "--config", str(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
        assert line.startswith("guard serving "), line + await self._drain_stderr()
        parts = line.split()
        self.url, self.admin = parts[2], parts[4]
        asyncio.get_running_loop().create_task(self._collect())
        return self

    async def _collect(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode())

    async def _drain_stderr(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    async def wait_for_log(self, text: str, tries: int = 200) -> str:
        for _ in range(tries):
            found = [line for line in self.stderr_lines if text in line]
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not logged; stderr: {''.join(self.stderr_lines)}")

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


def spawn_guard(config: Path) -> tuple[subprocess.Popen[str], str, str]:
    """`guard serve` as a child process, for synchronous tests: (process, url, admin url)."""
    process = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("guard serving "):
        process.kill()
        raise AssertionError(f"guard did not start: {line!r}")
    parts = line.split()
    return process, parts[2], parts[4] if len(parts) > 4 else ""


def write_settings(directory: Path, servers: list[str], *, forwarding: str = "passthrough",
                   extra: str = "", name: str = "guard.yaml") -> Path:
    path = directory / name
    server_lines = "\n".join(f"      - {s}" for s in servers)
    path.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"clusters:\n  - name: dev\n    servers:\n{server_lines}\n    token: {GUARD_TOKEN}\n"
        f"forwarding: {forwarding}\naccessLog: {{path: {directory / 'access.log'}}}\n{extra}")
    return path


@dataclass
class RunningGuard:
    server: Any
    url: str
    admin: str


async def start_guard(path: Path) -> RunningGuard:
    from guard import settings
    from guard.process.server import GuardServer

    server = GuardServer(settings.load(path), path=path)
    await server.start()
    return RunningGuard(server, server.addresses["main"], server.addresses["admin"])


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield bytes([sent % 251]) * n
        sent += n


def event(kind: str, name: str) -> bytes:
    return json.dumps({"type": kind, "object": {"metadata": {"name": name}}}).encode() + b"\n"
