"""A protobuf LIST through `guard serve` in front of the simulator is priced by its object count, as
client-go controllers ask for it (`Accept: application/vnd.kubernetes.protobuf`): the admin (exempt)
LISTs every pod once in protobuf, which teaches guard the count (300); alice's tenant has 12 tokens
for pod LISTs, so at 1 + 300/100 = 4 tokens a LIST she gets 3. Had guard not counted the protobuf
answer, the resource would stay unmeasured and cost the cap (10 tokens): 1 LIST."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.conftest import TEAM_BOOTSTRAP, SimServer
from tests.integration.federation_guards import guards_running

PROTOBUF = "application/vnd.kubernetes.protobuf"
READ_ALL_PODS = """---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: team-a-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-a}]
"""
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
      quota: {rate: 1/h, burst: 12, maxWait: 0s}
"""


async def _list(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    async with session.get(url + "/api/v1/pods", headers={"Authorization": f"Bearer {token}",
                                                           "Accept": f"{PROTOBUF}, application/json"}) as r:
        await r.read()
        return r.status, r.headers.get("Content-Type", "")


async def test_a_protobuf_list_is_priced_by_its_object_count(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    (tmp_path / "bootstrap.yaml").write_text(TEAM_BOOTSTRAP + READ_ALL_PODS)
    sim = sim_server("--seed-objects", "300", "--bootstrap", str(tmp_path / "bootstrap.yaml"))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: dev\n"
                      f"    server: {sim.url}\n    token: {sim.tokens['admin']}\nforwarding: passthrough\n"
                      f"policies: {tmp_path / 'policies'}\naccessLog: {{enabled: false}}\n")
    async with guards_running([config]) as (guard,), aiohttp.ClientSession() as session:
        taught = await _list(session, guard.url, sim.tokens["admin"])
        answers = [await _list(session, guard.url, sim.tokens["alice"]) for _ in range(5)]
    assert taught == (200, PROTOBUF)  # the simulator answered in protobuf, and guard relayed it
    assert [status for status, _ in answers] == [200, 200, 200, 429, 429]
