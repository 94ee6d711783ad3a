"""A client certificate plus a bearer token in passthrough (issue 13, item 6): guard would charge and
log the certificate's user while forwarding the token, so the api-server would run the request as
someone else. `guard serve` over TLS with a client CA refuses such requests with a 400 Status naming
the problem, before any review, and forwards nothing; in impersonate mode the certificate decides."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.proxy_fakes import FakeApiServer, GuardProcess, write_settings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "certs"
    subprocess.run([sys.executable, "-m", "guard.cli", "certs", "init", str(directory), "--user",
                    "carol:team-a"], check=True, capture_output=True)
    return directory


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


async def guard_with(tmp_path: Path, api: FakeApiServer, pki: Path, forwarding: str) -> GuardProcess:
    tls = f"tls: {{cert: {pki / 'server.crt'}, key: {pki / 'server.key'}, clientCA: {pki / 'ca.crt'}}}\n"
    return await GuardProcess(write_settings(tmp_path, [api.url], forwarding=forwarding, extra=tls)).start()


def client_tls(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki / "ca.crt")
    ctx.load_cert_chain(pki / "carol.crt", pki / "carol.key")
    return ctx


async def test_passthrough_refuses_a_certificate_with_a_token(tmp_path: Path, api: FakeApiServer,
                                                               pki: Path) -> None:
    """carol's certificate plus mallory's token: 400 Status naming both credentials; no TokenReview,
    nothing forwarded. The token alone is forwarded as before."""
    guard = await guard_with(tmp_path, api, pki, "passthrough")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls(pki))) as client:
            async with client.get(guard.url + "/api/v1/namespaces/team-a/pods",
                                  headers={"Authorization": "Bearer mallory-token"}) as r:
                body = json.loads(await r.read())
                assert (r.status, body["kind"], body["reason"]) == (400, "Status", "BadRequest")
                assert "client certificate" in body["message"] and "Authorization" in body["message"]
            assert api.token_reviews == 0 and api.seen == []
        plain = ssl.create_default_context(cafile=pki / "ca.crt")
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=plain)) as client,
                    client.get(guard.url + "/api/v1/namespaces/team-a/pods",
                               headers={"Authorization": "Bearer mallory-token"}) as r):
            assert r.status == 200
        assert api.seen[0].header("Authorization") == ["Bearer mallory-token"]
    finally:
        await guard.stop()


async def test_impersonate_mode_acts_as_the_certificate_user(tmp_path: Path, api: FakeApiServer,
                                                             pki: Path) -> None:
    """With forwarding: impersonate the token never leaves guard: carol's certificate decides."""
    guard = await guard_with(tmp_path, api, pki, "impersonate")
    try:
        async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls(pki))) as client,
                    client.get(guard.url + "/api/v1/namespaces/team-a/pods",
                               headers={"Authorization": "Bearer mallory-token"}) as r):
            assert r.status == 200
        assert api.seen[0].header("Impersonate-User") == ["carol"]
        assert api.seen[0].header("Authorization") != ["Bearer mallory-token"]
    finally:
        await guard.stop()
