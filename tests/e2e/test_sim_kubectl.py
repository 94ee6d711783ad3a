"""The real kubectl (v1.32) accepts `python -m chaos sim` as its api-server.

kubectl never sends a bearer token over plain http, so these run over the simulator's generated TLS
certificate, trusted through the kubeconfig's certificate-authority.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import SimServer, have_kubectl, peek_output

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1", ports: [{containerPort: 80}]}]
"""


@pytest.fixture
def sim(sim_server: Callable[..., SimServer]) -> SimServer:
    return sim_server("--seed-objects", "12", tls=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def deployment(sim: SimServer) -> dict[str, Any]:
    return dict(json.loads(ok(sim.kubectl("get", "deployment", "web", "-o", "json"))))


def test_get_prints_tables_json_and_yaml(sim: SimServer) -> None:
    """kubectl get renders the server's Table columns and decodes -o json / -o yaml."""
    table = ok(sim.kubectl("get", "pods", "-n", "seed-1")).splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert {line.split()[0] for line in table[1:]} == {"seed-1", "seed-11"}
    assert all(line.split()[1:3] == ["1/1", "Running"] for line in table[1:])
    assert "team-a" in ok(sim.kubectl("get", "namespaces"))
    listed = json.loads(ok(sim.kubectl("get", "pods", "-A", "-o", "json")))
    assert len(listed["items"]) == 12
    one = yaml.safe_load(ok(sim.kubectl("get", "pod", "seed-3", "-n", "seed-3", "-o", "yaml")))
    assert one["kind"] == "Pod" and one["metadata"]["uid"]


def test_create_then_apply_client_side_then_server_side(sim: SimServer) -> None:
    """create -f, a client-side apply that changes the image, a server-side apply that scales: it
    conflicts with kubectl-create's replicas until it forces."""
    assert "created" in ok(sim.kubectl("create", "-f", "-", stdin=DEPLOYMENT))
    changed = DEPLOYMENT.replace("nginx:1", "nginx:2")
    assert "configured" in ok(sim.kubectl("apply", "-f", "-", stdin=changed))
    assert deployment(sim)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    scaled = changed.replace("replicas: 2", "replicas: 4")
    refused = sim.kubectl("apply", "--server-side", "-f", "-", stdin=scaled)
    assert refused.returncode != 0
    assert 'conflict with "kubectl-create" using apps/v1: .spec.replicas' in refused.stderr
    forced = sim.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=scaled)
    assert "serverside-applied" in ok(forced)
    assert deployment(sim)["spec"]["replicas"] == 4


def test_apply_creates_and_strict_validation_rejects_unknown_fields(sim: SimServer) -> None:
    """Without --validate=false, kubectl leaves validation to the server, which rejects unknown fields."""
    assert "created" in ok(sim.kubectl("apply", "-f", "-", stdin=DEPLOYMENT))
    bad = sim.kubectl(
        "create", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbogus: 1\n"
    )
    assert bad.returncode != 0 and 'unknown field "bogus"' in bad.stderr


def test_patch_label_scale_and_dry_run_edit(sim: SimServer) -> None:
    """Merge, JSON and strategic patches, label, scale and a server-side dry-run replace."""
    ok(sim.kubectl("create", "-f", "-", stdin=DEPLOYMENT))
    ok(sim.kubectl("patch", "deployment", "web", "--type=merge", "-p", '{"spec":{"replicas":3}}'))
    assert deployment(sim)["spec"]["replicas"] == 3
    ok(
        sim.kubectl(
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":1}]',
        )
    )
    assert deployment(sim)["spec"]["replicas"] == 1
    ok(
        sim.kubectl(
            "patch",
            "deployment",
            "web",
            "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}',
        )
    )
    names = [c["name"] for c in deployment(sim)["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "side"]  # strategic merge: merged by name, not replaced
    ok(sim.kubectl("label", "deployment", "web", "tier=front"))
    assert "web" in ok(sim.kubectl("get", "deployments", "-l", "tier=front"))
    assert "scaled" in ok(sim.kubectl("scale", "deployment", "web", "--replicas=5"))
    assert deployment(sim)["spec"]["replicas"] == 5
    ok(sim.kubectl("rollout", "status", "deployment/web", "--timeout=20s"))  # its controller is done writing
    edited = ok(sim.kubectl("get", "deployment", "web", "-o", "yaml")).replace("replicas: 5", "replicas: 9")
    assert "server dry run" in ok(sim.kubectl("replace", "--dry-run=server", "-f", "-", stdin=edited))
    assert deployment(sim)["spec"]["replicas"] == 5


def test_delete(sim: SimServer) -> None:
    """kubectl delete removes the object and waits until it is gone."""
    ok(sim.kubectl("run", "doomed", "--image=busybox"))
    assert 'pod "doomed" deleted' in ok(sim.kubectl("delete", "pod", "doomed"))
    gone = sim.kubectl("get", "pod", "doomed")
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_get_watch_receives_an_event(sim: SimServer) -> None:
    """`kubectl get -w` prints a pod created after the watch started."""
    watcher = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(sim.kubeconfig("admin")), "get", "pods", "-w", "--request-timeout=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Creating repeatedly until seen avoids guessing when the watch is established.
        seen, attempt = "", 0
        while "late-" not in seen and attempt < 50:
            sim.request(
                "POST",
                "/api/v1/namespaces/default/pods",
                body={
                    "metadata": {"name": f"late-{attempt}"},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            )
            attempt += 1
            time.sleep(0.2)
            watcher.poll()
            seen = peek_output(watcher)
        assert "late-" in seen
    finally:
        watcher.kill()
        watcher.communicate()



def test_auth_can_i_and_whoami(sim: SimServer) -> None:
    """`auth can-i` answers from RBAC (yes for admin and for alice in team-a, no elsewhere)."""
    assert ok(sim.kubectl("auth", "can-i", "create", "pods")).strip() == "yes"
    assert ok(sim.kubectl("auth", "can-i", "create", "pods", "-n", "team-a", user="alice")).strip() == "yes"
    denied = sim.kubectl("auth", "can-i", "create", "pods", "-n", "team-b", user="alice")
    assert denied.returncode == 1 and denied.stdout.strip() == "no"
    whoami = json.loads(ok(sim.kubectl("auth", "whoami", "-o", "json", user="bob")))
    assert whoami["status"]["userInfo"]["username"] == "bob"
    assert "team-b" in whoami["status"]["userInfo"]["groups"]


def test_impersonation_allowed_for_admin_denied_for_alice(sim: SimServer) -> None:
    """--as works for a caller allowed to impersonate and is a 403 for one who is not."""
    whoami = json.loads(
        ok(sim.kubectl("auth", "whoami", "-o", "json", "--as", "alice", "--as-group", "team-a"))
    )
    assert whoami["status"]["userInfo"]["username"] == "alice"
    forbidden = sim.kubectl("get", "pods", "-n", "team-b", "--as", "alice", "--as-group", "team-a")
    assert forbidden.returncode == 1 and 'User "alice" cannot list resource "pods"' in forbidden.stderr
    denied = sim.kubectl("get", "pods", "--as", "admin", user="alice")
    assert denied.returncode == 1 and 'User "alice" cannot impersonate resource "users"' in denied.stderr
    assert sim.state()["impersonators"].get("admin", 0) >= 2
