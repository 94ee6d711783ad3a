"""Default exempt rules on the wire (issue 13, item 5): `guard serve` with a tenant policy in front of
the simulator. A caller no tenant claims (mallory) hammering leases in kube-system is held to the
catch-all quota (the default exempt rules once named every authenticated user there); system:masters
stays exempt from tenants' quotas."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SimServer
from tests.proxy_fakes import spawn_guard

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"
POLICY = """\
apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - {name: everything, quota: {rate: 1/s, burst: 1}}
"""


@pytest.fixture
def stack(sim_server: Callable[..., SimServer], tmp_path: Path) -> Iterator[tuple[SimServer, str]]:
    sim = sim_server()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nclusters:\n  - name: sim\n    server: {sim.url}\n"
                      f"    token: {sim.tokens['admin']}\naccessLog: {{enabled: false}}\n"
                      f"policies: {tmp_path / 'policies'}\n")
    process, url, _ = spawn_guard(config)
    try:
        yield sim, url
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_a_caller_no_tenant_claims_is_not_exempt_on_kube_system_leases(
        stack: tuple[SimServer, str]) -> None:
    """300 GETs and 100 PUTs of 60 KB on a kube-system lease by mallory: the catch-all quota
    (burst 10, 5/s) holds her, the rest get 429 and never reach the api-server."""
    sim, url = stack
    mallory = {"Authorization": f"Bearer {sim.tokens['mallory']}", "Content-Type": "application/json"}
    body = b'{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kube-scheduler",' \
           b'"annotations":{"pad":"' + b"x" * 60_000 + b'"}}}'
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=40)) as client:

        async def one(i: int) -> None:
            call = client.get(url + LEASE, headers=mallory) if i % 4 else client.put(url + LEASE, data=body,
                                                                                      headers=mallory)
            async with call as r:
                await r.read()
                statuses[r.status] += 1

        await asyncio.gather(*(one(i) for i in range(400)))  # 40 at a time, as a flood sends them
    elapsed = time.monotonic() - started
    reached = sim.state()["users"].get("mallory", {}).get("requests", 0)
    assert reached <= 10 + 5 * elapsed + 1, (reached, elapsed)
    assert statuses[429] >= 400 - reached - 1


async def test_system_masters_stays_exempt_from_tenant_quotas(stack: tuple[SimServer, str]) -> None:
    """The admin (system:masters) reads a lease 50 times in a row; every read passes."""
    sim, url = stack
    admin = {"Authorization": f"Bearer {sim.tokens['admin']}"}
    async with aiohttp.ClientSession() as client:
        for _ in range(50):
            async with client.get(url + "/api/v1/namespaces", headers=admin) as r:
                await r.read()
                assert r.status == 200
