"""Pod logs stream line by line and exec speaks kubectl's remotecommand WebSocket protocols."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from chaos.sim.streams import serve_exec, serve_log

STARTED = time.time() - 10
POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
    "spec": {"containers": [{"name": "main", "env": [{"name": "FOO", "value": "bar"}]}, {"name": "side"}]},
    "status": {"startTime": datetime.fromtimestamp(STARTED, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
}


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient[Any, Any]:
    async def log(request: web.Request) -> web.StreamResponse:
        return await serve_log(request, POD, request.query.get("follow") == "true", None)

    async def exec_(request: web.Request) -> web.StreamResponse:
        return await serve_exec(request, POD, request.query.getall("command", []), None)

    app = web.Application()
    app.router.add_get("/log", log)
    app.router.add_get("/exec", exec_)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def exec_over(
    client: TestClient[Any, Any], query: str, protocol: str, stdin: tuple[bytes, ...] = ()
) -> tuple[str | None, dict[int, bytes], dict[str, Any]]:
    """Run one exec; return the negotiated protocol, bytes per channel and the channel-3 Status."""
    channels: dict[int, bytes] = {}
    async with client.ws_connect("/exec?" + query, protocols=(protocol,)) as ws:
        for chunk in stdin:
            await ws.send_bytes(b"\x00" + chunk)
        if stdin:
            await ws.send_bytes(b"\xff\x00")  # v5: close stdin
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                channels[msg.data[0]] = channels.get(msg.data[0], b"") + msg.data[1:]
        negotiated = ws.protocol
    return negotiated, channels, json.loads(channels.get(3, b"{}"))


async def test_exec_echo_over_v5(client: TestClient[Any, Any]) -> None:
    """`echo hi` prints hi on stdout and ends with a Success Status on channel 3."""
    query = "command=echo&command=hi&stdout=true"
    protocol, channels, status = await exec_over(client, query, "v5.channel.k8s.io")
    assert protocol == "v5.channel.k8s.io"
    assert channels[1] == b"hi\n"
    assert status == {"metadata": {}, "status": "Success"}


async def test_exec_cat_echoes_stdin_until_the_client_closes_it(client: TestClient[Any, Any]) -> None:
    """With stdin attached, cat returns every chunk and ends on v5's close-stdin message."""
    _, channels, status = await exec_over(
        client, "command=cat&stdin=true&stdout=true", "v5.channel.k8s.io", (b"one\n", b"two\n")
    )
    assert channels[1] == b"one\ntwo\n"
    assert status["status"] == "Success"


async def test_exec_exit_code_travels_as_a_failure_status_over_v4(client: TestClient[Any, Any]) -> None:
    """A non-zero exit becomes NonZeroExitCode with an ExitCode cause, stderr on channel 2."""
    query = "command=sh&command=-c&command=echo+oops+%3E%262%3B+exit+3&stderr=true"
    protocol, channels, status = await exec_over(client, query, "v4.channel.k8s.io")
    assert protocol == "v4.channel.k8s.io"
    assert channels[2] == b"oops\n"
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


async def test_exec_without_upgrade_is_a_bad_request_status(client: TestClient[Any, Any]) -> None:
    """A plain GET (no WebSocket) gets the api-server's 400 Status, not a traceback."""
    async with client.get("/exec?command=echo") as r:
        assert r.status == 400
        assert (await r.json())["kind"] == "Status"


async def test_log_honours_tail_lines_container_and_timestamps(client: TestClient[Any, Any]) -> None:
    """tailLines=3 gives the last three lines of the named container, each timestamped."""
    async with client.get("/log?tailLines=3&container=side&timestamps=true") as r:
        lines = (await r.text()).splitlines()
    assert len(lines) == 3
    assert all("hello from web/side line" in line and line[:4].isdigit() for line in lines)
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2] and numbers[2] >= 9


async def test_log_of_an_unknown_container_is_a_bad_request(client: TestClient[Any, Any]) -> None:
    """Naming a container the pod lacks gets a 400 Status."""
    async with client.get("/log?container=nope") as r:
        assert r.status == 400
        assert "nope" in (await r.json())["message"]


async def test_log_follow_streams_new_lines_as_they_are_printed(client: TestClient[Any, Any]) -> None:
    """With follow=true the history arrives, then a new line each second on the open stream."""
    async with client.get("/log?follow=true&tailLines=1") as r:
        first = await r.content.readline()
        second = await r.content.readline()
        third = await r.content.readline()
    numbers = [int(line.decode().rsplit(" ", 1)[1]) for line in (first, second, third)]
    assert numbers[1] == numbers[0] + 1 and numbers[2] == numbers[0] + 2
