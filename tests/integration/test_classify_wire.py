"""Classification on the wire (issue 13, item 3): `guard serve` reads odd request targets as the
api-server does and sends the api-server the form it classified. Requests are written on raw
sockets so that no client library tidies the target first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.apiserver_requestinfo import read
from tests.proxy_fakes import FakeApiServer, GuardProcess, Record, write_settings

POLICY = """\
apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: pod-lists
      verbs: [list]
      resources: [pods]
      quota: {rate: 1/m, burst: 1}
    - name: pod-watches
      verbs: [watch]
      resources: [pods]
      maxWatches: 2
    - name: everything-else
      quota: {rate: 100/s, burst: 100}
"""


class WatchingApiServer(FakeApiServer):
    """The proxy fake, holding open every request the api-server would serve as a watch."""

    async def echo(self, request: web.Request) -> web.StreamResponse:
        if read(request.method, request.raw_path).verb == "watch":
            self.seen.append(Record(request.method, request.path_qs, list(request.headers.items())))
            return await self.watch(request)
        return await super().echo(request)


@pytest.fixture
async def api() -> AsyncIterator[WatchingApiServer]:
    fake = WatchingApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: WatchingApiServer) -> AsyncIterator[GuardProcess]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    config = write_settings(tmp_path, [api.url], extra=f"policies: {tmp_path / 'policies'}\n")
    process = await GuardProcess(config).start()
    yield process
    await process.stop()


async def send(guard: GuardProcess, target: str) -> tuple[int, bytes, asyncio.StreamWriter]:
    """Write one request for `target` as alice on a fresh connection: (status, head and body so far,
    the connection, left open for watches)."""
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: guard\r\n"
                 "Authorization: Bearer alice-token\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    body = b""
    if b"Content-Length:" in head:
        length = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    return status, head + body, writer


async def test_a_doubled_slash_is_the_list_it_is_and_is_sent_upstream_merged(
        guard: GuardProcess, api: WatchingApiServer) -> None:
    """20 LISTs of `/api//v1/namespaces/team-a/pods` against a 1-LIST quota: 1 admitted, 19 refused
    with 429, and the api-server is sent `/api/v1/namespaces/team-a/pods`."""
    statuses = []
    for _ in range(20):
        status, _, writer = await send(guard, "/api//v1/namespaces/team-a/pods")
        writer.close()
        statuses.append(status)
    assert (statuses.count(200), statuses.count(429)) == (1, 19)
    assert [r.path for r in api.seen] == ["/api/v1/namespaces/team-a/pods"]


@pytest.mark.parametrize("spelling", ["yes", "", "tRuE"])
async def test_any_true_watch_spelling_is_a_watch_held_to_max_watches(
        guard: GuardProcess, api: WatchingApiServer, spelling: str) -> None:
    """20 watches spelt `?watch=<spelling>` against maxWatches 2: 2 reach the api-server, 18 get 429."""
    statuses, open_ = [], []
    for _ in range(20):
        status, _, writer = await send(guard, f"/api/v1/namespaces/team-a/pods?watch={spelling}")
        statuses.append(status)
        open_.append(writer)
    for writer in open_:
        writer.close()
    assert (statuses.count(200), statuses.count(429)) == (2, 18)
    assert len(api.seen) == 2


@pytest.mark.parametrize("target", ["/api/v1/namespaces/team-a/pods/x/..",
                                    "/api/v1/namespaces/team-a/pods/%2e%2e/",
                                    "/api/v1/namespaces/team-a/pods/%zz"])
async def test_a_target_guard_cannot_read_as_the_api_server_does_is_a_400_status(
        guard: GuardProcess, api: WatchingApiServer, target: str) -> None:
    """Dot segments and malformed escapes get a 400 Status naming the problem; nothing goes upstream."""
    status, raw, writer = await send(guard, target)
    writer.close()
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert status == 400 and body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert "segment" in body["message"] or "escape" in body["message"]
    assert api.seen == []
