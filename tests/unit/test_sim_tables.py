"""`kubectl get` columns the simulator prints: pod STATUS as kubectl derives it, nodes, jobs."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.sim.tables import to_table

Obj = dict[str, Any]


def _cells(kind: str, obj: Obj) -> dict[str, Any]:
    table = to_table(kind, [obj], resource_version="1")
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


@pytest.mark.parametrize(
    ("pod", "shown"),
    [
        ({"status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}}, "Running"),
        (
            {
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
                }
            },
            "ContainerCreating",
        ),
        (
            {
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [{"state": {"terminated": {"reason": "Completed"}}}],
                }
            },
            "Completed",
        ),
        (
            {"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}, "status": {"phase": "Running"}},
            "Terminating",
        ),
    ],
)
def test_pod_status_column(pod: Obj, shown: str) -> None:
    pod = {"metadata": {"name": "p", **pod.get("metadata", {})}, "spec": {"containers": [{}]}, **pod}
    pod["metadata"].setdefault("name", "p")
    assert _cells("Pod", pod)["Status"] == shown


def test_node_and_job_columns() -> None:
    node = {
        "metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
        },
    }
    assert {k: v for k, v in _cells("Node", node).items() if k != "Age"} == {
        "Name": "n",
        "Status": "Ready",
        "Roles": "control-plane",
        "Version": "v1.32.0",
    }
    job = {
        "metadata": {"name": "j"},
        "spec": {"completions": 2},
        "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]},
    }
    assert _cells("Job", job)["Status"] == "Complete" and _cells("Job", job)["Completions"] == "2/2"
