"""Pod streams of the simulated api-server: `pods/log` (with follow), `pods/exec` and `pods/attach`
over WebSocket.

Every simulated container prints one line per second since the pod started, so logs are
deterministic and `kubectl logs -f` sees a new line each second. Exec speaks the remotecommand
WebSocket protocols kubectl 1.32 offers (`v5.channel.k8s.io`, then `v4.channel.k8s.io`): each
binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 the final Status,
4 resize — and v5 adds 255, "close this channel" (how a client says stdin ended); stdout and stderr
flow only when the request asks for them. Commands run in the built-in shell of `chaos.sim.shell`
on the container's in-memory file system, kept per container for the pod's lifetime. This module
never runs a real process and never blocks on anything but the client and its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from chaos.sim import portforward, shell, spdy
from chaos.sim.filesystem import Filesystem

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_LOG_LINES = 1000
"""A pod that ran for hours keeps only its last lines, as a rotated container log would."""
_TRUE = frozenset({"true", "1"})


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


def _pod_name(pod: dict[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("name", "pod"))


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec", {})
    kinds = ("containers", "initContainers", "ephemeralContainers")
    return [c for k in kinds for c in spec.get(k) or []] or [{"name": "main"}]


def _container_or_error(request: web.Request, pod: dict[str, Any]) -> dict[str, Any] | web.Response:
    """The container the request names (default: the first), or the api-server's 400."""
    containers = _containers(pod)
    wanted = request.query.get("container", "")
    if not wanted:
        return containers[0]
    for c in containers:
        if c.get("name") == wanted:
            return c
    return _status(400, "BadRequest", f"container {wanted} is not valid for pod {_pod_name(pod)}")


def _started_at(pod: dict[str, Any]) -> float:
    stamp = pod.get("status", {}).get("startTime") or pod.get("metadata", {}).get("creationTimestamp")
    if not stamp:
        return time.time()
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _rfc3339(at: float, nano: bool = False) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    if nano:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_line(pod: str, container: str, started: float, n: int, timestamps: bool) -> bytes:
    at = started + n
    text = f"{_rfc3339(at)} hello from {pod}/{container} line {n}\n"
    return ((_rfc3339(at, nano=True) + " ") if timestamps else "").encode() + text.encode()


async def serve_log(request: web.Request, pod: dict[str, Any], follow: bool, sim: Any) -> web.StreamResponse:
    """The container's lines so far (honouring tailLines), then one a second while following."""
    container = _container_or_error(request, pod)
    if isinstance(container, web.Response):
        return container
    name, cname = _pod_name(pod), str(container.get("name", "main"))
    timestamps = request.query.get("timestamps", "").lower() in _TRUE
    started = _started_at(pod)
    printed = int(time.time() - started)
    first = max(1, printed - MAX_LOG_LINES + 1)
    tail = request.query.get("tailLines", "")
    if tail.isdigit():
        first = max(first, printed - int(tail) + 1)
    history = b"".join(_log_line(name, cname, started, n, timestamps) for n in range(first, printed + 1))
    if not follow:
        return web.Response(body=history, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(history)
    with contextlib.suppress(ConnectionError):
        n = printed + 1
        while _pod_exists(sim, pod):
            await asyncio.sleep(max(0.0, started + n - time.time()))
            await response.write(_log_line(name, cname, started, n, timestamps))
            n += 1
        await response.write_eof()
    return response


def _pod_exists(sim: Any, pod: dict[str, Any]) -> bool:
    """Whether the followed pod is still in the store; True when the sim cannot tell."""
    store = getattr(sim, "store", None)
    if store is None or not hasattr(store, "find"):
        return True
    from chaos.sim.kinds import TABLE  # the API core's kind table, looked up only when following

    kind = TABLE.lookup("", "v1", "pods")
    meta = pod.get("metadata", {})
    current = store.find(kind, meta.get("namespace", ""), meta.get("name", ""))
    return current is not None and current.get("metadata", {}).get("uid") == meta.get("uid")


def container_files(sim: Any, pod: dict[str, Any], container: str) -> Filesystem:
    """The in-memory file system of one container, kept for the pod's lifetime (one per uid)."""
    files: dict[str, Filesystem] | None = getattr(sim, "files", None)
    key = f"{pod.get('metadata', {}).get('uid', '')}/{container}"
    if files is None:
        return Filesystem.for_container(_pod_name(pod))
    if key not in files:
        files[key] = Filesystem.for_container(_pod_name(pod))
    return files[key]


def _exec_container(pod: dict[str, Any], container: dict[str, Any], sim: Any) -> shell.Container:
    name = _pod_name(pod)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": name}
    for var in container.get("env", []) or []:
        if "name" in var and "value" in var:
            env[str(var["name"])] = str(var["value"])
    env.update({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": "/root"})
    files = container_files(sim, pod, str(container.get("name", "")))
    return shell.Container(hostname=name, env=env, files=files)


def exit_status(commands: list[str], code: int) -> dict[str, Any]:
    """The channel-3 Status client-go turns into the exit code of `kubectl exec`."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {commands}, "
        f"exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _wanted(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() in _TRUE


async def _upgrade(request: web.Request) -> web.WebSocketResponse | web.Response:
    ws = web.WebSocketResponse(protocols=PROTOCOLS)
    if not ws.can_prepare(request).ok:
        return _status(400, "BadRequest", "Upgrade request required")
    await ws.prepare(request)
    return ws


async def serve_exec(
    request: web.Request, pod: dict[str, Any], commands: list[str], sim: Any
) -> web.StreamResponse:
    """Run `commands` in the built-in shell over a remotecommand WebSocket."""
    container = _container_or_error(request, pod)
    if isinstance(container, web.Response):
        return container
    if not commands:
        return _status(400, "BadRequest", "you must specify at least 1 command")
    async def run(streams: shell.Streams) -> int:
        return await shell.run(commands, _exec_container(pod, container, sim), streams)

    return await _session(request, pod, run, lambda code: exit_status(commands, code))


async def _session(request: web.Request, pod: dict[str, Any], run: Any, status: Any) -> web.StreamResponse:
    """Serve `run` over the WebSocket protocols, or over SPDY for the kubectl versions that upgrade so."""
    if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
        return await spdy.serve(request, pod, run=spdy.exec_runner(request, _over_spdy(request, run), status))
    ws = await _upgrade(request)
    if isinstance(ws, web.Response):
        return ws
    await Channels(ws, closable=ws.ws_protocol == PROTOCOLS[0]).serve(request, run, status)
    return ws


def _over_spdy(request: web.Request, run: Any) -> Any:
    async def work(session: spdy.Session, stdin: asyncio.Queue[bytes | None] | None) -> int:
        def writer(name: str) -> shell.Write:
            stream = session.stream_of(name)

            async def write(data: bytes) -> None:
                if stream is not None and _wanted(request, name, name == "stdout"):
                    for chunk in portforward.chunks(data):
                        await session.write(stream, chunk)

            return write

        async def read() -> AsyncIterator[bytes]:
            while stdin is not None and (chunk := await stdin.get()) is not None:
                yield chunk

        return int(await run(shell.Streams(writer("stdout"), writer("stderr"), read() if stdin else None)))

    return work


async def serve_attach(request: web.Request, pod: dict[str, Any], sim: Any) -> web.StreamResponse:
    """Attach to a container's main process: a shell (`kubectl run -it -- sh`, `kubectl debug -it`)
    reads its commands from stdin; any other prints a log line a second and echoes stdin back."""
    container = _container_or_error(request, pod)
    if isinstance(container, web.Response):
        return container
    name, cname, started = _pod_name(pod), str(container.get("name", "main")), _started_at(pod)
    main = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]

    async def interactive(streams: shell.Streams) -> int:
        code = await shell.run(main[:1], _exec_container(pod, container, sim), streams)
        _main_exited(sim, pod, container, code)
        return code

    async def run(streams: shell.Streams) -> int:
        async def lines() -> None:
            n = int(time.time() - started) + 1
            while True:
                await asyncio.sleep(max(0.0, started + n - time.time()))
                await streams.stdout(_log_line(name, cname, started, n, False))
                n += 1

        printer = asyncio.get_running_loop().create_task(lines())
        try:
            async for chunk in streams.input():
                await streams.stdout(chunk)
            await asyncio.Event().wait()  # no stdin: attached until the client leaves
        finally:
            printer.cancel()
        return 0

    chosen = interactive if main and main[0] in shell.SHELLS and "-c" not in main else run
    return await _session(request, pod, chosen, lambda code: exit_status([], code))


def _main_exited(sim: Any, pod: dict[str, Any], container: dict[str, Any], code: int) -> None:
    """A pod whose main shell exited stops, unless its restart policy brings it back."""
    from chaos.sim import pods  # the kubelet's view of a pod, needed only when a main process exits
    from chaos.sim.kinds import TABLE

    spec = pod.get("spec") or {}
    regular = any(c.get("name") == container.get("name") for c in spec.get("containers") or [])
    if sim is None or not regular or spec.get("restartPolicy", "Always") == "Always":
        return
    kind, meta = TABLE.lookup("", "v1", "pods"), pod.get("metadata") or {}
    current = sim.store.find(kind, meta.get("namespace", ""), meta.get("name", ""))
    if current is not None and current["metadata"].get("uid") == meta.get("uid"):
        sim.store.update(kind, meta["namespace"], meta["name"], pods.finished(current, code))


class Channels:
    """One remotecommand WebSocket: stdin in (binary or text frames), stdout/stderr/status out."""

    def __init__(self, ws: web.WebSocketResponse, *, closable: bool) -> None:
        self._ws = ws
        self._closable = closable
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def serve(self, request: web.Request, run: Any, status: Any) -> None:
        """Run `run(streams)` with the streams the request asked for; send its exit Status; close."""
        reader = asyncio.get_running_loop().create_task(self.read())
        try:
            streams = shell.Streams(
                stdout=self.writer(STDOUT) if _wanted(request, "stdout", True) else _discard,
                stderr=self.writer(STDERR) if _wanted(request, "stderr", False) else _discard,
                stdin=self.stdin() if _wanted(request, "stdin", False) else None,
            )
            worker = asyncio.get_running_loop().create_task(run(streams))
            done, _ = await asyncio.wait({worker, reader}, return_when=asyncio.FIRST_COMPLETED)
            if worker in done:
                await self._ws.send_bytes(bytes([ERROR]) + json.dumps(status(worker.result())).encode())
            else:
                worker.cancel()
        except ConnectionError:
            pass  # the client went away: nobody is left to tell
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self._ws.close()

    def writer(self, channel: int) -> shell.Write:
        async def write(data: bytes) -> None:
            for chunk in portforward.chunks(data):
                await self._ws.send_bytes(bytes([channel]) + chunk)

        return write

    async def stdin(self) -> AsyncIterator[bytes]:
        while (chunk := await self._stdin.get()) is not None:
            yield chunk

    async def read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type == WSMsgType.BINARY and msg.data:
                    self._dispatch(bytes(msg.data))
                elif msg.type == WSMsgType.TEXT and msg.data:
                    self._dispatch(str(msg.data).encode())  # the Python client sends str as text frames
        finally:
            self._stdin.put_nowait(None)  # the socket closed: so did stdin

    def _dispatch(self, data: bytes) -> None:
        channel, payload = data[0], data[1:]
        if channel == STDIN and payload:
            self._stdin.put_nowait(payload)
        elif channel == CLOSE and self._closable and payload[:1] == bytes([STDIN]):
            self._stdin.put_nowait(None)


async def _discard(data: bytes) -> None:
    return None
