"""The simulated cluster behind the API, in process: a fresh cluster's objects, the controllers
(Deployment → ReplicaSet → Pods, Jobs), the kubelet's Pending → Running, graceful deletion, CRDs,
protobuf on the wire and server-side apply conflicts. Waits poll the API; nothing asserts a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from chaos.sim import protobuf as pb
from chaos.sim import protojson
from chaos.sim.controllers import heartbeat
from chaos.sim.kinds import TABLE
from tests.integration.test_sim_api import Api, make_api

Client = Callable[..., Awaitable[TestClient[Any, Any]]]
NS = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        },
    },
}


@pytest.fixture
async def api(aiohttp_client: Client, tmp_path: Path) -> Api:
    return await make_api(aiohttp_client, tmp_path, system_pods=True)


async def until(api: Api, path: str, test: Callable[[Any], bool], tries: int = 100) -> Any:
    """GET `path` until `test` holds (polling, as a client would); the last answer."""
    for _ in range(tries):
        _, body = await api.call("GET", path)
        if test(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never satisfied the test: {body}")


async def test_a_fresh_cluster_has_nodes_services_accounts_and_system_pods(api: Api) -> None:
    _, nodes = await api.call("GET", "/api/v1/nodes")
    assert [n["metadata"]["name"] for n in nodes["items"]] == [
        "sim-control-plane",
        "sim-worker",
        "sim-worker2",
    ]
    assert all(
        c["status"] == "True"
        for n in nodes["items"]
        for c in n["status"]["conditions"]
        if c["type"] == "Ready"
    )
    _, leases = await api.call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
    assert len(leases["items"]) == 3
    _, service = await api.call("GET", f"{NS}/services/kubernetes")
    assert service["spec"]["clusterIP"] == "10.96.0.1"
    for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
        status, _ = await api.call("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
        assert status == 200
    running = await until(
        api,
        "/api/v1/namespaces/kube-system/pods?fieldSelector=status.phase%3DRunning",
        lambda b: len(b["items"]) == 9,
    )
    names = [p["metadata"]["name"] for p in running["items"]]
    assert sum(n.startswith("coredns-") for n in names) == 2
    assert sum(n.startswith("kube-proxy-") for n in names) == 3
    _, services = await api.call("GET", "/apis/apiregistration.k8s.io/v1/apiservices")
    assert "v1.apps" in {s["metadata"]["name"] for s in services["items"]}


async def test_deployment_owns_a_replicaset_that_owns_ready_pods(api: Api) -> None:
    """Pods start Pending, their kubelet starts them, and the Deployment becomes Available."""
    status, created = await api.call("POST", f"{APPS}/deployments", body=DEPLOYMENT)
    assert status == 201 and not created.get("status", {}).get("readyReplicas")
    done = await until(
        api, f"{APPS}/deployments/web", lambda d: d.get("status", {}).get("availableReplicas") == 3
    )
    available = next(c for c in done["status"]["conditions"] if c["type"] == "Available")
    assert (
        available["status"] == "True"
        and done["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    )
    _, sets = await api.call("GET", f"{APPS}/replicasets")
    (rs,) = sets["items"]
    assert rs["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    _, pods = await api.call("GET", f"{NS}/pods?labelSelector=app%3Dweb")
    assert len(pods["items"]) == 3
    for pod in pods["items"]:
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        assert pod["metadata"]["labels"]["pod-template-hash"] == rs["metadata"]["labels"]["pod-template-hash"]
        assert {c["type"] for c in pod["status"]["conditions"]} == {
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        }
        assert pod["status"]["podIP"].startswith("10.244.") and pod["spec"]["nodeName"].startswith("sim-")


async def test_a_new_template_is_a_new_revision_and_deleting_cascades(api: Api) -> None:
    await api.call("POST", f"{APPS}/deployments", body=DEPLOYMENT)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:2"}]}}}}
    await api.call(
        "PATCH",
        f"{APPS}/deployments/web",
        body=patch,
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    sets = await until(api, f"{APPS}/replicasets", lambda b: len(b["items"]) == 2)
    replicas = sorted(
        (s["metadata"]["annotations"]["deployment.kubernetes.io/revision"], s["spec"]["replicas"])
        for s in sets["items"]
    )
    assert replicas == [("1", 0), ("2", 3)]
    await api.call("DELETE", f"{APPS}/deployments/web")
    await until(api, f"{NS}/pods?labelSelector=app%3Dweb", lambda b: not b["items"])
    _, left = await api.call("GET", f"{APPS}/replicasets")
    assert left["items"] == []


async def test_a_job_completes_with_succeeded_pods(api: Api) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "completions": 2,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            },
        },
    }
    await api.call("POST", "/apis/batch/v1/namespaces/default/jobs", body=job)
    done = await until(
        api,
        "/apis/batch/v1/namespaces/default/jobs/once",
        lambda j: any(c["type"] == "Complete" for c in j.get("status", {}).get("conditions", [])),
    )
    assert done["status"]["succeeded"] == 2
    pods = await until(
        api,
        f"{NS}/pods?labelSelector=job-name%3Donce",
        lambda b: [p["status"]["phase"] for p in b["items"]] == ["Succeeded", "Succeeded"],
    )
    terminated = pods["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0


async def test_a_deleted_pod_terminates_before_it_goes(api: Api) -> None:
    """With a grace period the pod is first marked (Ready False), then removed; with 0, at once."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}]},
    }
    await api.call("POST", f"{NS}/pods", body=pod)
    await until(api, f"{NS}/pods/p", lambda p: p["status"]["phase"] == "Running")
    status, marked = await api.call("DELETE", f"{NS}/pods/p")
    ready = next(c for c in marked["status"]["conditions"] if c["type"] == "Ready")
    assert status == 200 and marked["metadata"]["deletionTimestamp"] and ready["status"] == "False"
    await until(api, f"{NS}/pods/p", lambda p: p.get("code") == 404)
    await api.call("POST", f"{NS}/pods", body=pod)
    await api.call("DELETE", f"{NS}/pods/p?gracePeriodSeconds=0")
    status, _ = await api.call("GET", f"{NS}/pods/p")
    assert status == 404


async def test_custom_resources_of_a_crd_are_served_listed_and_watched(api: Api) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    status, stored = await api.call(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd
    )
    assert status == 201 and {c["type"] for c in stored["status"]["conditions"]} == {
        "Established",
        "NamesAccepted",
    }
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    status, made = await api.call(
        "POST",
        widgets,
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3},
        },
    )
    assert status == 201 and made["spec"] == {"size": 3} and made["metadata"]["generation"] == 1
    _, listed = await api.call("GET", widgets)
    assert [w["metadata"]["name"] for w in listed["items"]] == ["w"]
    _, resources = await api.call("GET", "/apis/example.com/v1")
    assert resources["resources"][0]["shortNames"] == ["wd"]


async def test_protobuf_in_and_out_and_a_malformed_body_is_400(api: Api) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb"}, "data": {"a": "b"}}
    headers = {
        "Content-Type": pb.CONTENT_TYPE,
        "Accept": "application/vnd.kubernetes.protobuf, application/json",
    }
    async with api.client.post(
        f"{NS}/configmaps",
        data=protojson.encode_object(cm),
        headers={**headers, "Authorization": "Bearer t-admin"},
    ) as resp:
        assert resp.status == 201 and resp.content_type == pb.CONTENT_TYPE
        answer = protojson.decode_object(await resp.read())
    assert (
        answer["data"] == {"a": "b"} and answer["metadata"]["uid"] and "generation" not in answer["metadata"]
    )
    status, body = await api.call(
        "POST", f"{NS}/configmaps", raw=b"k8s\x00\x0a\xff", headers={"Content-Type": pb.CONTENT_TYPE}
    )
    assert status == 400 and body["reason"] == "BadRequest"


async def test_validation_and_apply_conflicts(api: Api) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nameless"},
        "spec": {"containers": [{"image": "x"}]},
    }
    status, body = await api.call("POST", f"{NS}/pods", body=bad)
    assert status == 422 and "spec.containers[0].name: Required value" in body["message"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"k": "1"}}
    await api.call("POST", f"{NS}/configmaps", body=cm)
    apply = {"Content-Type": "application/apply-patch+yaml"}
    changed = json.dumps({**cm, "data": {"k": "2"}}).encode()
    status, body = await api.call(
        "PATCH", f"{NS}/configmaps/owned?fieldManager=me", raw=changed, headers=apply
    )
    assert status == 409 and body["details"]["causes"][0]["field"] == ".data.k"
    status, body = await api.call(
        "PATCH", f"{NS}/configmaps/owned?fieldManager=me&force=true", raw=changed, headers=apply
    )
    assert status == 200 and body["data"] == {"k": "2"}


async def test_node_leases_heartbeat() -> None:
    """The kubelets' heartbeat renews every node lease each period."""
    from chaos.sim.options import SimOptions
    from chaos.sim.simulation import Simulation

    sim = Simulation.from_options(SimOptions())
    leases = TABLE.lookup("coordination.k8s.io", "v1", "leases")
    assert leases is not None
    before = {k: v["metadata"]["resourceVersion"] for k, v in sim.store.items(leases, "kube-node-lease")}
    beating = asyncio.get_running_loop().create_task(heartbeat(sim.store, every=0.01))
    while any(
        v["metadata"]["resourceVersion"] == before[k] for k, v in sim.store.items(leases, "kube-node-lease")
    ):
        await asyncio.sleep(0.01)
    beating.cancel()
