"""The official Python client (`kubernetes`) works against `python -m chaos sim` over plain http."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, watch

from tests.conftest import SimServer


@pytest.fixture
def core(sim_server: Callable[..., SimServer]) -> Iterator[client.CoreV1Api]:
    sim = sim_server("--seed-objects", "30", "--bookmark-interval-s", "0.2")
    config = client.Configuration()
    config.host = sim.url
    config.api_key = {"authorization": sim.tokens["admin"]}
    config.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(config) as api_client:
        yield client.CoreV1Api(api_client)


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "py"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}


def test_list_and_paginate(core: client.CoreV1Api) -> None:
    """list_pod_for_all_namespaces returns the seeded pods, also page by page."""
    assert len(core.list_pod_for_all_namespaces().items) == 30
    first = core.list_pod_for_all_namespaces(limit=20)
    rest = core.list_pod_for_all_namespaces(limit=20, _continue=first.metadata._continue)
    assert len(first.items) + len(rest.items) == 30 and rest.metadata._continue is None


def test_watch_receives_an_event_and_a_bookmark(core: client.CoreV1Api) -> None:
    """A watch from a list's resourceVersion sees a later create, then bookmarks."""
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", POD)
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod,
        "default",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        seen.append(event["type"])
        if "BOOKMARK" in seen:
            stream.stop()
    assert seen[0] == "ADDED" and "BOOKMARK" in seen


def test_create_replace_stale_conflicts_and_delete(core: client.CoreV1Api) -> None:
    """A replace with a stale resourceVersion is 409; delete without a grace period removes the pod."""
    created = core.create_namespaced_pod("default", POD)
    core.patch_namespaced_pod("py", "default", {"metadata": {"labels": {"fresh": "yes"}}})
    created.metadata.labels = {"stale": "yes"}
    with pytest.raises(client.ApiException) as raised:
        core.replace_namespaced_pod("py", "default", created)
    assert raised.value.status == 409
    core.delete_namespaced_pod("py", "default", grace_period_seconds=0)
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_pod("py", "default")
    assert missing.value.status == 404
