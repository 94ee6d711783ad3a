"""The simulated api-server's HTTP semantics, in process: errors, writes, lists, watches, reviews,
impersonation and the exact record at /debug/sim/state."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from chaos.sim import app as sim_app
from chaos.sim import reads
from chaos.sim.app import build_app
from chaos.sim.calls import Call
from chaos.sim.kinds import TABLE
from chaos.sim.options import SimOptions
from chaos.sim.paths import parse
from chaos.sim.simulation import Simulation

TOKENS = {"admin": "t-admin", "alice": "t-alice", "mallory": "t-mallory"}
PODS = "/api/v1/namespaces/default/pods"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "labels": {"app": "web"}},
    "spec": {"containers": [{"name": "c", "image": "x"}]},
}
Client = Callable[..., Awaitable[TestClient[Any, Any]]]


class Api:
    def __init__(self, client: TestClient[Any, Any], sim: Simulation) -> None:
        self.client, self.sim = client, sim

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str = "admin",
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = {
            "Authorization": f"Bearer {TOKENS[user]}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.client.request(method, path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


async def make_api(aiohttp_client: Client, tmp_path: Path, **options: Any) -> Api:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('t-admin,admin,1,"system:masters"\nt-alice,alice,2,"team-a"\nt-mallory,mallory,3\n')
    sim = Simulation.from_options(SimOptions(token_file=tokens, **options))
    return Api(await aiohttp_client(build_app(sim)), sim)


@pytest.fixture
async def api(aiohttp_client: Client, tmp_path: Path) -> Api:
    return await make_api(aiohttp_client, tmp_path, seed_objects=25, seed_object_bytes=100)


@pytest.mark.parametrize(
    ("method", "path", "raw", "code", "reason"),
    [
        ("POST", PODS, b"{not json", 400, "BadRequest"),
        ("GET", "/api/v1/foos", None, 404, "NotFound"),
        ("GET", "/apis/nope.io/v1/things", None, 404, "NotFound"),
        ("GET", "/api/v1/pods?labelSelector=app%20in%20(web", None, 400, "BadRequest"),
        ("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dn1", None, 400, "BadRequest"),
        ("PUT", PODS, b"{}", 405, "MethodNotAllowed"),
        ("POST", f"{PODS}/p1", b"{}", 405, "MethodNotAllowed"),
        ("GET", "/apis/authentication.k8s.io/v1/tokenreviews", None, 405, "MethodNotAllowed"),
        ("POST", "/version", b"{}", 405, "MethodNotAllowed"),
        ("PATCH", f"{PODS}/nope", b"{}", 415, "UnsupportedMediaType"),
        ("GET", "/api/v1/namespaces/default/pods/nope/status", None, 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/configmaps/x/scale", None, 404, "NotFound"),
    ],
)
async def test_bad_input_gets_the_api_servers_status(
    api: Api, method: str, path: str, raw: bytes | None, code: int, reason: str
) -> None:
    """Each bad request is answered with a Status of the right code and reason, never a traceback."""
    status, body = await api.call(method, path, raw=raw)
    assert status == code
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code


async def test_not_found_names_the_object(api: Api) -> None:
    """404 carries details.name and details.kind like the api-server's."""
    status, body = await api.call("GET", f"{PODS}/ghost")
    assert status == 404 and body["details"] == {"name": "ghost", "kind": "pods"}  # Go omits the empty group
    assert body["message"] == 'pods "ghost" not found'


async def test_an_unexpected_exception_is_a_500_status(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-all turns any exception into a 500 Status without a traceback."""

    async def boom(call: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setitem(sim_app._MAIN, "get", boom)
    status, body = await api.call("GET", "/api/v1/namespaces/seed-0/pods/seed-0")
    assert status == 500 and body["reason"] == "InternalError" and "secret detail" not in json.dumps(body)


async def test_writes_follow_optimistic_concurrency(api: Api) -> None:
    """create stamps uid and rising resourceVersions; a stale update is 409; a fresh one succeeds."""
    status, created = await api.call("POST", PODS, body=POD)
    assert status == 201 and created["metadata"]["uid"]
    assert (await api.call("POST", PODS, body=POD))[1]["reason"] == "AlreadyExists"
    stale = created["metadata"]["resourceVersion"]
    status, updated = await api.call(
        "PUT", f"{PODS}/p1", body={**created, "metadata": {**created["metadata"], "labels": {"app": "db"}}}
    )
    assert status == 200 and int(updated["metadata"]["resourceVersion"]) > int(stale)
    status, body = await api.call("PUT", f"{PODS}/p1", body=created)
    assert status == 409 and body["reason"] == "Conflict"
    status, generated = await api.call("POST", PODS, body={**POD, "metadata": {"generateName": "gen-"}})
    assert status == 201 and generated["metadata"]["name"].startswith("gen-")


async def test_dry_run_and_missing_namespace(api: Api) -> None:
    """dryRun=All stores nothing; creating into a namespace that does not exist is 404."""
    status, _ = await api.call("POST", f"{PODS}?dryRun=All", body=POD)
    assert status == 201
    assert (await api.call("GET", f"{PODS}/p1"))[0] == 404
    status, body = await api.call("POST", "/api/v1/namespaces/nowhere/pods", body=POD)
    assert status == 404 and body["details"]["kind"] == "namespaces"


async def test_status_subresource_owns_status(api: Api) -> None:
    """A main-resource update ignores status; the status subresource writes it."""
    await api.call("POST", PODS, body=POD)
    _, pod = await api.call("GET", f"{PODS}/p1")
    _, kept = await api.call("PUT", f"{PODS}/p1", body={**pod, "status": {"phase": "Failed"}})
    assert pod["status"]["phase"] == kept["status"]["phase"] == "Pending"  # not started by its kubelet yet
    _, written = await api.call("PUT", f"{PODS}/p1/status", body={**kept, "status": {"phase": "Failed"}})
    assert written["status"]["phase"] == "Failed"


async def test_pagination_returns_every_object_once(api: Api) -> None:
    """limit/continue pages cover all 25 seeded pods exactly once, with remainingItemCount."""
    names: list[str] = []
    token, pages = "", 0
    while True:
        _, page = await api.call("GET", f"/api/v1/pods?limit=10&continue={token}")
        names += [p["metadata"]["name"] for p in page["items"]]
        pages += 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 25 - len(names)
    assert pages == 3 and sorted(names) == sorted(f"seed-{i}" for i in range(25))


async def test_label_and_field_selectors_filter_lists(api: Api) -> None:
    """Selectors narrow a list to the matching objects."""
    _, by_label = await api.call("GET", "/api/v1/pods?labelSelector=app%3Dseed-1")
    assert sorted(p["metadata"]["name"] for p in by_label["items"]) == [
        "seed-1",
        "seed-15",
        "seed-22",
        "seed-8",
    ]
    _, by_field = await api.call("GET", "/api/v1/pods?fieldSelector=metadata.namespace%3Dseed-3")
    assert sorted(p["metadata"]["name"] for p in by_field["items"]) == ["seed-13", "seed-23", "seed-3"]


async def test_table_for_kubectl_get(api: Api) -> None:
    """Accept as=Table answers a meta.k8s.io Table with the pod columns."""
    _, table = await api.call(
        "GET",
        "/api/v1/namespaces/seed-0/pods",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [r["cells"][:4] for r in table["rows"]] == [
        ["seed-0", "1/1", "Running", 0],
        ["seed-10", "1/1", "Running", 0],
        ["seed-20", "1/1", "Running", 0],
    ]


async def watch_events(api: Api, query: str) -> list[dict[str, Any]]:
    async with api.client.get(
        f"{PODS}?watch=true&{query}", headers={"Authorization": "Bearer t-admin"}
    ) as resp:
        return [json.loads(line) for line in (await resp.text()).splitlines()]


async def test_watch_resumes_from_a_resource_version(api: Api) -> None:
    """A watch from a list's resourceVersion replays the later changes, then a bookmark."""
    _, listed = await api.call("GET", PODS)
    await api.call("POST", PODS, body=POD)
    await api.call("DELETE", f"{PODS}/p1?gracePeriodSeconds=0")
    events = await watch_events(
        api,
        f"resourceVersion={listed['metadata']['resourceVersion']}&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "BOOKMARK"]


async def test_expired_versions_are_410(aiohttp_client: Client, tmp_path: Path) -> None:
    """Beyond the watch window a watch gets an ERROR 410 event and a continued list a 410 Status."""
    api = await make_api(aiohttp_client, tmp_path, seed_objects=4, watch_cache_window=3)
    _, page = await api.call("GET", "/api/v1/pods?limit=2")
    for i in range(4):
        await api.call("POST", PODS, body={**POD, "metadata": {"name": f"p{i}"}})
    events = await watch_events(api, "resourceVersion=1&timeoutSeconds=1")
    assert events == [{"type": "ERROR", "object": events[0]["object"]}]
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    status, body = await api.call("GET", f"/api/v1/pods?limit=2&continue={page['metadata']['continue']}")
    assert status == 410 and body["reason"] == "Expired"


async def test_list_is_charged_to_the_overload_model(api: Api) -> None:
    """A LIST tells the replica's load how many objects and bytes it returned."""
    charged: list[tuple[int, int]] = []

    class Load:
        async def serve_list(self, n_objects: int, n_bytes: int) -> None:
            charged.append((n_objects, n_bytes))

    request = type("R", (), {"query": {"labelSelector": "app=seed-1"}, "headers": {}})()
    call = Call(
        request,
        api.sim,
        TABLE.lookup("", "v1", "pods"),
        parse("GET", "/api/v1/pods", {}),  # type: ignore[arg-type]
        api.sim.authenticator.tokens["t-admin"],
    )
    response = await reads.list_(call, Load())
    assert charged == [(4, len(response.text))]
