"""JSON merge patch, JSON patch and the strategic-merge approximation the simulator applies."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.sim.patches import json_patch, merge_patch, strategic_merge
from chaos.sim.status import StatusError

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
    "spec": {
        "containers": [{"name": "web", "image": "nginx:1", "env": [{"name": "X", "value": "1"}]}],
        "tolerations": [],
    },
}


def test_merge_patch_sets_and_deletes_keys_and_replaces_lists() -> None:
    """null deletes, maps merge, lists are replaced whole (RFC 7386)."""
    out = merge_patch(
        POD, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"containers": [{"name": "db"}]}}
    )
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["containers"] == [{"name": "db"}]
    assert POD["metadata"]["labels"] == {"a": "1", "b": "2"}  # the target is not mutated


def test_json_patch_operations() -> None:
    """add, replace, remove, copy, move and test (RFC 6902)."""
    out = json_patch(
        POD,
        [
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"},
            {"op": "add", "path": "/metadata/labels/c", "value": "3"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/d"},
            {"op": "move", "from": "/metadata/labels/d", "path": "/metadata/labels/e"},
            {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k"}},
            {"op": "test", "path": "/metadata/name", "value": "p"},
        ],
    )
    assert out["spec"]["containers"][0]["image"] == "nginx:2"
    assert out["metadata"]["labels"] == {"b": "2", "c": "3", "e": "2"}
    assert out["spec"]["tolerations"] == [{"key": "k"}]


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/metadata/name", "value": "q"}],
        [{"op": "remove", "path": "/metadata/missing"}],
        [{"op": "frobnicate", "path": "/x"}],
    ],
)
def test_json_patch_failures_are_status_errors(ops: list[dict[str, Any]]) -> None:
    """A failing test, a missing path or an unknown op is a 4xx Status, not a crash."""
    with pytest.raises(StatusError) as raised:
        json_patch(POD, ops)
    assert 400 <= raised.value.code < 500


def test_strategic_merge_merges_containers_by_name_and_honours_directives() -> None:
    """Containers merge by name; $patch: delete removes one; $setElementOrder is dropped."""
    out = strategic_merge(
        POD,
        {
            "spec": {
                "containers": [{"name": "web", "image": "nginx:2"}, {"name": "side", "image": "busybox"}],
                "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            }
        },
    )
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [
        ("web", "nginx:2"),
        ("side", "busybox"),
    ]
    assert out["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]
    assert "$setElementOrder/containers" not in out["spec"]
    deleted = strategic_merge(out, {"spec": {"containers": [{"name": "web", "$patch": "delete"}]}})
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["side"]


def test_strategic_merge_replaces_lists_without_a_merge_key() -> None:
    """Lists the built-in kinds do not merge by key are replaced, as in a merge patch."""
    out = strategic_merge({"spec": {"args": ["a", "b"]}}, {"spec": {"args": ["c"]}})
    assert out["spec"]["args"] == ["c"]
