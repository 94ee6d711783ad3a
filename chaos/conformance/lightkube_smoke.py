"""lightkube (a typed client with its own models) against a target: the calls a controller makes.

lightkube ships no test suite that runs against a cluster, so these checks are ours: typed get,
list and watch, create, server-side apply, wait for a condition, field selectors, a CRD and its
custom resources, delete. It is installed from PyPI when missing; without it the suite is
reported as skipped. It must never leave objects in namespaces it did not create.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

from chaos.conformance.results import Failure, Result
from chaos.conformance.targets import Target

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.example.com"},
    "spec": {
        "group": "smoke.example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def _ensure() -> bool:
    try:
        importlib.import_module("lightkube")
        return True
    except ImportError:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "lightkube"], capture_output=True
        )
        return done.returncode == 0


def _checks(ns: str) -> list[tuple[str, Callable[[Any], None]]]:
    from lightkube import generic_resource
    from lightkube.models.apps_v1 import DeploymentSpec
    from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
    from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, Pod

    def nodes(client: Any) -> None:
        assert len(list(client.list(Node))) >= 1

    def namespace(client: Any) -> None:
        client.create(Namespace(metadata=ObjectMeta(name=ns)))
        assert client.get(Namespace, ns).status.phase == "Active"

    def deployment(client: Any) -> None:
        template = PodTemplateSpec(
            metadata=ObjectMeta(labels={"app": "lk"}),
            spec=PodSpec(containers=[Container(name="web", image="nginx")]),
        )
        spec = DeploymentSpec(
            replicas=2, selector=LabelSelector(matchLabels={"app": "lk"}), template=template
        )
        client.create(Deployment(metadata=ObjectMeta(name="lk", namespace=ns), spec=spec))
        done = client.wait(
            Deployment, "lk", namespace=ns, for_conditions=["Available"], raise_for_conditions=[]
        )
        assert done.status.availableReplicas == 2

    def running_pods(client: Any) -> None:
        pods = list(client.list(Pod, namespace=ns, fields={"status.phase": "Running"}))
        assert len(pods) == 2 and all(p.metadata.ownerReferences for p in pods)

    def apply(client: Any) -> None:
        body = ConfigMap(metadata=ObjectMeta(name="lk-cm", namespace=ns), data={"a": "1"})
        client.apply(body, field_manager="lightkube-smoke")
        assert client.get(ConfigMap, "lk-cm", namespace=ns).data == {"a": "1"}

    def watch(client: Any) -> None:
        seen = next(iter(client.watch(Pod, namespace=ns, labels={"app": "lk"})))
        assert seen[0] in ("ADDED", "MODIFIED")

    def custom_resources(client: Any) -> None:
        client.create(CustomResourceDefinition.from_dict(CRD))
        widget_type = generic_resource.create_namespaced_resource(
            "smoke.example.com", "v1", "Widget", "widgets"
        )
        client.create(widget_type(metadata=ObjectMeta(name="w1", namespace=ns), spec={"size": 3}))
        assert client.get(widget_type, "w1", namespace=ns).spec == {"size": 3}

    def delete(client: Any) -> None:
        client.delete(Namespace, ns)

    return [
        ("list nodes", nodes),
        ("create namespace", namespace),
        ("deployment becomes Available", deployment),
        ("field selector status.phase", running_pods),
        ("server-side apply", apply),
        ("watch", watch),
        ("CRD and custom resource", custom_resources),
        ("delete namespace", delete),
    ]


def suite(target: Target) -> Result:
    if not _ensure():
        return Result("lightkube", target.kind, note="skipped: lightkube is not installed and pip failed")
    from lightkube import Client, KubeConfig

    client = Client(config=KubeConfig.from_file(target.kubeconfig))
    passed, failures = 0, []
    for name, check in _checks(f"lightkube-{uuid.uuid4().hex[:6]}"):
        try:
            check(client)
            passed += 1
        except Exception as e:  # any failure of a third-party client is a result, not a crash
            failures.append(Failure(name, f"{type(e).__name__}: {e}"[:160]))
    return Result("lightkube", target.kind, passed=passed, failed=len(failures), failures=tuple(failures))
