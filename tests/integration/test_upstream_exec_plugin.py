"""guard's own credential from a kubeconfig whose user authenticates through an exec plugin (as EKS,
GKE and AKS kubeconfigs do): the plugin runs when guard starts, and again before its token expires,
and guard uses the new token from then on — shown with a real `guard serve` and the simulator."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import SimServer
from tests.proxy_fakes import GuardProcess

PLUGIN = textwrap.dedent("""\
    import datetime, json, pathlib, sys
    runs = pathlib.Path(sys.argv[1])
    count = int(runs.read_text()) + 1 if runs.exists() else 1
    runs.write_text(str(count))
    tokens = json.loads(pathlib.Path(sys.argv[2]).read_text())
    # The first token may not create TokenReviews and expires in 61 s (renewed 60 s before): the
    # next ones are the admin's and last an hour.
    token, life = (tokens["mallory"], 61) if count == 1 else (tokens["admin"], 3600)
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=life)
    status = {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                      "status": status}))
""")


def _kubeconfig(tmp: Path, sim: SimServer) -> Path:
    (tmp / "plugin.py").write_text(PLUGIN)
    (tmp / "tokens.json").write_text(json.dumps(sim.tokens))
    exec_config = {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                   "args": [str(tmp / "plugin.py"), str(tmp / "runs"), str(tmp / "tokens.json")],
                   "interactiveMode": "Never"}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "guard",
              "clusters": [{"name": "sim", "cluster": {"server": sim.url}}],
              "users": [{"name": "guard", "user": {"exec": exec_config}}],
              "contexts": [{"name": "guard", "context": {"cluster": "sim", "user": "guard"}}]}
    path = tmp / "guard.kubeconfig"
    path.write_text(json.dumps(config))
    return path


async def _get(guard: GuardProcess, token: str, namespace: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{guard.url}/api/v1/namespaces/{namespace}/pods",
            headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status


async def test_an_exec_plugin_token_is_used_and_renewed_before_it_expires(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """The plugin's first token may not review tokens, so alice is refused; guard runs the plugin
    again before that token's expiry, and with the renewed token alice's LIST is served."""
    sim = sim_server()
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n"
                      f"  - name: dev\n    kubeconfig: {_kubeconfig(tmp_path, sim)}\n"
                      f"forwarding: passthrough\naccessLog: {{enabled: false}}\n")
    guard = await GuardProcess(config).start()
    try:
        assert (tmp_path / "runs").read_text() == "1"  # run once, at start
        assert await _get(guard, sim.tokens["alice"], "team-a") != 200
        for _ in range(200):
            if (tmp_path / "runs").read_text() != "1":
                break
            await asyncio.sleep(0.05)
        statuses = []
        for _ in range(100):  # the renewed token is in use once the renewal has returned
            statuses.append(await _get(guard, sim.tokens["bob"], "team-b"))
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.05)
    finally:
        await guard.stop()
    assert (tmp_path / "runs").read_text() == "2" and statuses[-1] == 200
    assert sim.state()["tokenReviews"].get("bob", 0) >= 1  # reviewed with the admin's renewed token
