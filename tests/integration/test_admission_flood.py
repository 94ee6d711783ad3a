"""Through `guard serve` against the simulator: a flooded tenant gets exactly its quota, the
simulator sees only what guard admitted, other tenants are untouched, and kubectl honours 429s."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SimServer
from tests.policies import write_policy
from tests.proxy_fakes import GuardProcess

RATE, BURST, FLOOD_RATE, SECONDS = 20, 20, 200, 10
def _guard_config(tmp_path: Path, sim: SimServer, quotas: dict[str, tuple[str, int]], *,
                  tls: str = "") -> Path:
    policies = tmp_path / "policies"
    for name, (rate, burst) in quotas.items():
        write_policy(policies, name, rate, burst, scope="tenant")
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\n{tls}admin: 127.0.0.1:0\n"
        f"clusters:\n  - name: dev\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"forwarding: passthrough\npolicies: {policies}\naccessLog: {{path: {tmp_path / 'access.log'}}}\n")
    return config


async def _paced(client: aiohttp.ClientSession, url: str, token: str, rate: int, seconds: int,
                 statuses: Counter[int], retry_afters: list[str]) -> None:
    """Send rate x seconds requests on schedule, not waiting for answers (a flood ignores 429s)."""
    headers = {"Authorization": f"Bearer {token}"}

    async def one() -> None:
        async with client.get(url, headers=headers) as resp:
            await resp.read()
            statuses[resp.status] += 1
            if resp.status == 429:
                retry_afters.append(resp.headers.get("Retry-After", ""))

    start = asyncio.get_running_loop().time()
    tasks = []
    for i in range(rate * seconds):
        delay = start + i / rate - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)


async def test_a_flooded_tenant_gets_its_quota_and_the_others_all_pass(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """team-a at 200/s for 10 s against 20/s burst 20: admitted within [95 %, 100 %] of 220 (of
    burst + 20 x the flood's actual span), the simulator saw exactly those; team-b's all succeed."""
    sim = sim_server()
    guard = await GuardProcess(_guard_config(tmp_path, sim, {
        "team-a": (f"{RATE}/s", BURST), "team-b": ("1000/s", 1000)})).start()
    try:
        path = "/api/v1/namespaces/{}/configmaps"
        flood: Counter[int] = Counter()
        calm: Counter[int] = Counter()
        retry_afters: list[str] = []
        connector = aiohttp.TCPConnector(limit=400)
        async with aiohttp.ClientSession(connector=connector) as client:
            began = time.monotonic()
            await asyncio.gather(
                _paced(client, guard.url + path.format("team-a"), sim.tokens["alice"], FLOOD_RATE, SECONDS,
                       flood, retry_afters),
                _paced(client, guard.url + path.format("team-b"), sim.tokens["bob"], 10, SECONDS, calm, []))
            span = time.monotonic() - began
    finally:
        await guard.stop()
    admitted = flood[200]
    assert sum(flood.values()) == FLOOD_RATE * SECONDS and set(flood) == {200, 429}
    assert 0.95 * (BURST + RATE * SECONDS) <= admitted <= BURST + RATE * span + 1
    assert all(r.isdigit() and int(r) >= 1 for r in retry_afters)
    assert calm == Counter({200: 10 * SECONDS})
    seen = sim.state()["users"]
    assert seen["alice"]["requests"] == admitted
    assert seen["bob"]["requests"] == 10 * SECONDS


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
async def test_kubectl_waits_out_429s_and_completes(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """Against a 1/s burst-2 quota, kubectl is answered 429 with Retry-After, waits, retries and succeeds."""
    sim = sim_server()
    certs = tmp_path / "certs"  # kubectl sends bearer tokens over TLS only
    subprocess.run([sys.executable, "-m", "guard.cli", "certs", "init", str(certs)], check=True,
                   capture_output=True)
    tls = f"tls: {{cert: {certs / 'server.crt'}, key: {certs / 'server.key'}}}\n"
    guard = await GuardProcess(_guard_config(tmp_path, sim, {"team-b": ("1/s", 2)}, tls=tls)).start()
    try:
        kubeconfig = sim.kubeconfig("bob", namespace="team-b")
        config = json.loads(kubeconfig.read_text())
        ca = str(certs / "ca.crt")
        config["clusters"][0]["cluster"] = {"server": guard.url, "certificate-authority": ca}
        kubeconfig.write_text(json.dumps(config))
        env_home = {"KUBECACHEDIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
        results = []
        for _ in range(3):
            proc = await asyncio.create_subprocess_exec(
                "kubectl", "--kubeconfig", str(kubeconfig), "get", "configmaps", "-n", "team-b",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env_home})
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            results.append((proc.returncode, err.decode()))
        async with aiohttp.ClientSession() as client, client.get(guard.admin + "/metrics") as resp:
            metrics = await resp.text()
    finally:
        await guard.stop()
    assert [code for code, _ in results] == [0, 0, 0], (results, guard.stderr_lines[-20:])
    rejected = [line for line in metrics.splitlines()
                if line.startswith("guard_admission_decisions_total") and 'decision="rejected"' in line]
    assert rejected and float(rejected[0].split()[-1]) >= 1
