"""guard in front of a fake api-server, over real sockets: verbs, streaming, headers, upgrades, errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chaos.ports import free_port
from tests.proxy_fakes import (
    GUARD_TOKEN,
    FakeApiServer,
    RunningGuard,
    chunks,
    event,
    start_guard,
    write_settings,
)

ALICE = {"Authorization": "Bearer alice-token"}
MALLORY = {"Authorization": "Bearer mallory-token"}
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


async def _guard(tmp_path: Path, servers: list[str], **kw: str) -> AsyncIterator[RunningGuard]:
    guard = await start_guard(write_settings(tmp_path, servers, **kw))
    yield guard
    await guard.server.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[RunningGuard]:
    async for g in _guard(tmp_path, [api.url]):
        yield g


@pytest.fixture
async def impersonating(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[RunningGuard]:
    async for g in _guard(tmp_path, [api.url], forwarding="impersonate"):
        yield g


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def test_every_verb_reaches_the_api_server_with_the_callers_token(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession, method: str) -> None:
    """Each HTTP method is forwarded once, path and query intact, with the caller's Authorization."""
    async with client.request(method, guard.url + "/api/v1/namespaces/a/pods?limit=5", headers=ALICE) as r:
        assert r.status == 200
    assert [(s.method, s.path) for s in api.seen] == [(method, "/api/v1/namespaces/a/pods?limit=5")]
    assert api.seen[0].header("Authorization") == ["Bearer alice-token"]


async def test_a_request_body_is_streamed_through_unchanged(
        guard: RunningGuard, client: aiohttp.ClientSession) -> None:
    """A 2 MB chunked body arrives byte for byte (the fake reports its size and hash)."""
    total = 2 * 1024 * 1024
    digest = hashlib.sha256()
    async for c in chunks(total):
        digest.update(c)
    async with client.post(guard.url + "/api/v1/namespaces/a/configmaps", data=chunks(total),
                           headers=ALICE) as r:
        answer = await r.json()
    assert answer["bodyBytes"] == total and answer["bodySha256"] == digest.hexdigest()


async def test_a_body_over_the_limit_is_refused_with_a_status(
        tmp_path: Path, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """maxBodyBytes applies to declared lengths: 413 Status, and the api-server sees nothing."""
    async for g in _guard(tmp_path, [api.url], extra="limits: {maxBodyBytes: 1000}\n"):
        async with client.post(g.url + "/api/v1/namespaces/a/configmaps", data=b"x" * 5000,
                               headers=ALICE) as r:
            body = await r.json()
        assert r.status == 413 and body["kind"] == "Status" and body["code"] == 413
    assert api.seen == []


async def test_watch_events_arrive_one_by_one(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """Each watch event is readable by the client before the api-server sends the next one."""
    async with client.get(guard.url + "/api/v1/pods?watch=true", headers=ALICE) as r:
        for i in range(3):
            await api.watch_events.put(event("ADDED", f"p{i}"))
            line = await asyncio.wait_for(r.content.readline(), 5)
            assert json.loads(line)["object"]["metadata"]["name"] == f"p{i}"
        await api.watch_events.put(None)
        assert await r.content.read() == b""


async def test_websocket_upgrade_is_tunnelled_both_ways(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """exec over WebSocket: the subprotocol is negotiated end to end and frames echo through guard."""
    url = guard.url + "/api/v1/namespaces/a/pods/p/exec?command=echo&stdout=true"
    async with client.ws_connect(url, headers=ALICE, protocols=("v5.channel.k8s.io",)) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
        await ws.send_bytes(b"\x00hi")
        assert (await ws.receive(timeout=5)).data == b"\x01hi"
        await ws.send_str("text")
        assert (await ws.receive(timeout=5)).data == "echo:text"
    assert api.seen[0].header("Authorization") == ["Bearer alice-token"]


@pytest.mark.parametrize(("headers", "code"), [
    ({"Impersonate-User": "system:admin"}, 403),
    ({"Impersonate-User": "system:admin", "Connection": "Impersonate-User"}, 403),
    ({"Impersonate-User": "x", "Impersonate-Group": "system:masters"}, 403),
    ({"Impersonate-Uid": "u-admin", "Impersonate-User": "admin"}, 403),
    ({"Impersonate-Group": "system:masters"}, 400),  # a group without a user: the api-server's 400
])
async def test_impersonation_by_an_unprivileged_user_is_refused(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession, headers: dict[str, str],
        code: int) -> None:
    """mallory cannot impersonate, even hiding the header behind Connection: refused, nothing forwarded."""
    async with client.get(guard.url + "/api/v1/secrets", headers={**MALLORY, **headers}) as r:
        body = await r.json()
    assert r.status == code and body["kind"] == "Status" and body["code"] == code
    assert api.seen == []


async def test_admin_may_impersonate_and_the_headers_are_reissued(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """An allowed impersonation reaches the api-server as guard's canonical Impersonate-* headers."""
    async with client.get(guard.url + "/api/v1/pods", headers={**ADMIN, "Impersonate-User": "bob"}) as r:
        assert r.status == 200
    assert api.seen[0].header("Impersonate-User") == ["bob"]
    assert "system:authenticated" in api.seen[0].header("Impersonate-Group")


@pytest.mark.parametrize("headers", [
    {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"},
    {"X-Remote-Extra-Scopes": "all"},
    {"Connection": "Authorization, X-Forwarded-For"},
])
async def test_front_proxy_headers_are_stripped_and_connection_cannot_drop_security_headers(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession,
        headers: dict[str, str]) -> None:
    """X-Remote-* never reach the api-server; Connection cannot remove Authorization or X-Forwarded-For."""
    async with client.get(guard.url + "/api/v1/pods", headers={**ALICE, **headers}) as r:
        assert r.status == 200
    seen = api.seen[0]
    assert not [k for k, _ in seen.headers if k.lower().startswith("x-remote-")]
    assert seen.header("Authorization") == ["Bearer alice-token"]
    assert seen.header("X-Forwarded-For") == ["127.0.0.1"]


async def test_impersonate_mode_sends_guards_credential_and_the_callers_identity(
        impersonating: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """impersonate: Authorization is guard's own; Impersonate-User names the caller, even under a
    Connection header that names them."""
    headers = {**ALICE, "Connection": "Impersonate-User, Impersonate-Group, Authorization"}
    async with client.get(impersonating.url + "/api/v1/pods", headers=headers) as r:
        assert r.status == 200
    seen = api.seen[0]
    assert seen.header("Authorization") == [f"Bearer {GUARD_TOKEN}"]
    assert seen.header("Impersonate-User") == ["alice"]
    assert seen.header("Impersonate-Group") == ["team-a"]


async def test_upstream_hop_by_hop_headers_are_removed_from_the_response(
        guard: RunningGuard, client: aiohttp.ClientSession) -> None:
    """The api-server's Connection-named header does not reach the client."""
    async with client.get(guard.url + "/api/v1/pods", headers=ALICE) as r:
        assert r.status == 200
        assert "X-Upstream-Secret" not in r.headers


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_unauthenticated_callers_get_a_401_status(
        guard: RunningGuard, api: FakeApiServer, client: aiohttp.ClientSession,
        headers: dict[str, str]) -> None:
    """No token or a bad token: 401 Status JSON, and the request never reaches the api-server."""
    async with client.get(guard.url + "/api/v1/pods", headers=headers) as r:
        body = await r.json()
    assert r.status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    assert api.seen == []


async def test_a_refusing_endpoint_is_skipped_for_reads_and_writes(
        tmp_path: Path, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """With one of two endpoints refusing connections, every request still succeeds."""
    dead = f"http://127.0.0.1:{free_port()}"
    async for g in _guard(tmp_path, [dead, api.url]):
        for method in ["GET", "POST", "GET", "DELETE"] * 3:
            async with client.request(method, g.url + "/api/v1/pods", headers=ALICE) as r:
                assert r.status == 200
    assert len(api.seen) == 12


async def test_connections_beyond_max_connections_replace_idle_ones_or_are_closed(
        tmp_path: Path, api: FakeApiServer) -> None:
    """limits.maxConnections: 2 — while two requests are being served a third connection is
    dropped; once they are idle, a newcomer takes the place of the one idle longest."""
    async for g in _guard(tmp_path, [api.url], extra="limits: {maxConnections: 2}\n"):
        sessions = [aiohttp.ClientSession() for _ in range(3)]
        try:
            held = [asyncio.ensure_future(s.get(g.url + "/api/v1/namespaces/hold/pods", headers=ALICE))
                    for s in sessions[:2]]
            while len(api.seen) < 2:
                await asyncio.sleep(0.01)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with sessions[2].get(g.url + "/api/v1/pods", headers=ALICE) as r:
                    await r.read()
            api.hold.set()
            for answer in await asyncio.gather(*held):
                assert answer.status == 200
                answer.release()
            async with sessions[2].get(g.url + "/api/v1/pods", headers=ALICE) as r:
                assert r.status == 200
            stats = g.server._main.stats
            assert stats.refused >= 1  # aiohttp may try a dropped connection twice
            assert (stats.evicted, len(g.server._main.connections)) == (1, 2)
        finally:
            for s in sessions:
                await s.close()
    assert len(api.seen) == 3


async def test_a_reload_applies_new_connection_limits(tmp_path: Path, api: FakeApiServer) -> None:
    """SIGHUP's reload hands the main listener the new `limits` (connections and timeouts)."""
    async for g in _guard(tmp_path, [api.url], extra="limits: {maxConnections: 2}\n"):
        write_settings(tmp_path, [api.url], extra="limits: {maxConnections: 3, writeTimeout: 5s}\n")
        assert await g.server.reload()
        limits = g.server._main.limits
        assert (limits.max_connections, limits.write_timeout) == (3, 5.0)


async def test_an_api_server_silent_beyond_request_timeout_gets_a_503_but_a_watch_does_not(
        tmp_path: Path, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """limits.requestTimeout bounds how long an ordinary request waits for the api-server (a 503
    Status with Retry-After); a watch is long-running and may stay silent as long as it likes."""
    async for g in _guard(tmp_path, [api.url], extra="limits: {requestTimeout: 1s}\n"):
        async with client.get(g.url + "/api/v1/namespaces/hold/pods", headers=ALICE,
                              timeout=aiohttp.ClientTimeout(total=10)) as r:
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert body["kind"] == "Status" and "did not answer in time" in body["message"]
        async with client.get(g.url + "/api/v1/pods?watch=true", headers=ALICE) as r:
            assert r.status == 200
            await asyncio.sleep(2.0)  # twice the timeout with no event
            await api.watch_events.put(event("ADDED", "late"))
            line = await asyncio.wait_for(r.content.readline(), 5)
        assert b'"late"' in line


async def _expect_continue(url: str, token: str, body: bytes) -> tuple[bytes, bytes]:
    """POST with `Expect: 100-continue`, sending the body only after an interim answer; returns
    (the first answer head, whatever followed the body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: guard\r\n"
                 b"Authorization: Bearer %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                 % (token.encode(), len(body)))
    first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    rest = b""
    if first.startswith(b"HTTP/1.1 100 "):
        writer.write(body)
        rest = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    writer.close()
    return first, rest


async def test_expect_100_continue_is_answered_by_guard_once_the_request_is_admitted(
        guard: RunningGuard, api: FakeApiServer) -> None:
    """A client waiting on `Expect: 100-continue` gets 100 Continue from guard, then the api-server's
    answer (never the api-server's own 100, which would be taken for the answer); `Expect` is not
    forwarded. A request refused before its body is needed gets its Status at once, without 100."""
    first, rest = await _expect_continue(guard.url, "alice-token", b"x" * 3000)
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and b'"bodyBytes": 3000' in rest
    assert api.seen[-1].header("Expect") == []
    seen = len(api.seen)
    first, rest = await _expect_continue(guard.url, "no-such-token", b"x" * 3000)
    assert first.startswith(b"HTTP/1.1 401 ") and rest == b""
    assert len(api.seen) == seen


async def test_no_endpoint_answering_gives_503_with_retry_after(
        tmp_path: Path, api: FakeApiServer, client: aiohttp.ClientSession) -> None:
    """When no api-server endpoint accepts connections: 503 ServiceUnavailable Status with Retry-After."""
    async for g in _guard(tmp_path, [api.url, f"http://127.0.0.1:{free_port()}"]):
        async with client.get(g.url + "/api/v1/pods", headers=ALICE) as r:  # fills the identity cache
            assert r.status == 200
        await api.stop()
        async with client.get(g.url + "/api/v1/pods", headers=ALICE) as r:
            body = await r.json()
        assert r.status == 503 and body["reason"] == "ServiceUnavailable"
        assert int(r.headers["Retry-After"]) >= 1


async def test_requests_spread_over_endpoints(tmp_path: Path, client: aiohttp.ClientSession) -> None:
    """Sequential requests alternate between two healthy endpoints."""
    a, b = FakeApiServer(), FakeApiServer()
    await a.start()
    await b.start()
    try:
        async for g in _guard(tmp_path, [a.url, b.url]):
            for _ in range(10):
                async with client.get(g.url + "/api/v1/pods", headers=ALICE) as r:
                    assert r.status == 200
    finally:
        await a.stop()
        await b.stop()
    assert len(a.seen) >= 3 and len(b.seen) >= 3 and len(a.seen) + len(b.seen) == 10


async def test_admin_listener_serves_metrics_health_and_redacted_config(
        guard: RunningGuard, client: aiohttp.ClientSession) -> None:
    """/metrics counts requests by verb and code; /readyz is ok; /debug/guard/config hides the token."""
    async with client.get(guard.url + "/api/v1/pods", headers=ALICE) as r:
        assert r.status == 200
    async with client.get(guard.admin + "/metrics") as r:
        text = await r.text()
    assert 'guard_requests_total{cluster="dev",code="200",verb="list"} 1.0' in text
    assert "guard_identity_token_reviews_total 1.0" in text
    async with client.get(guard.admin + "/readyz") as r:
        assert r.status == 200
    async with client.get(guard.admin + "/debug/guard/config") as r:
        config = await r.text()
    assert GUARD_TOKEN not in config and "<redacted>" in config


async def test_access_log_has_one_line_per_request_and_no_token(
        guard: RunningGuard, tmp_path: Path, client: aiohttp.ClientSession) -> None:
    """The access log names user, verb and resource, and never contains the bearer token."""
    async with client.get(guard.url + "/api/v1/namespaces/a/pods/p1", headers=ALICE) as r:
        assert r.status == 200
    text = (tmp_path / "access.log").read_text()
    entry = json.loads(text.splitlines()[-1])
    assert (entry["user"], entry["verb"], entry["resource"], entry["namespace"], entry["status"]) == (
        "alice", "get", "pods", "a", 200)
    assert "alice-token" not in text
