"""Discovery negotiation and the OpenAPI documents built from the schema table."""

from __future__ import annotations

import pytest

from chaos.sim import discovery, openapi
from chaos.sim.kinds import TABLE


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", "v2"),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2beta1",
        ),
        ("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json", None),
        ("application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", None),
        ("application/json", None),
    ],
)
def test_aggregated_discovery_answers_the_version_asked_for(accept: str, version: str | None) -> None:
    """kubectl 1.27-1.29 ask for v2beta1 first, 1.30+ for v2; plain JSON gets the legacy documents."""
    assert discovery.aggregated_version(accept) == version


def test_aggregated_documents_split_core_from_groups() -> None:
    core = discovery.aggregated(list(TABLE.kinds), core=True, version="v2beta1")
    groups = discovery.aggregated(list(TABLE.kinds), core=False)
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2beta1" and len(core["items"]) == 1
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert {s["subresource"] for s in pods["subresources"]} >= {
        "exec",
        "attach",
        "portforward",
        "log",
        "status",
    }
    autoscaling = next(g for g in groups["items"] if g["metadata"]["name"] == "autoscaling")
    assert [v["version"] for v in autoscaling["versions"]] == ["v2", "v1"]


def test_openapi_v3_describes_containers_for_kubectl_explain() -> None:
    doc = openapi.v3_group_version(list(TABLE.kinds), "", "v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    container = schemas["io.k8s.api.core.v1.Container"]
    assert container["required"] == ["name"] and container["properties"]["ports"][
        "x-kubernetes-patch-merge-key"
    ] == ("containerPort")
    service_ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert service_ports["x-kubernetes-patch-merge-key"] == "port"
    assert schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "Pod"}
    ]
