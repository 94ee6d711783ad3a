"""LIST pricing on the wire (issue 13, item 2): `guard serve` in front of a small fake api-server
that answers LISTs of 300 pods in JSON or, when asked, in protobuf (the simulator on this branch
answers JSON only). An admin (exempt) teaches guard the count; alice's tenant has 12 tokens for pod
LISTs and watches, so at 1 + 300/100 = 4 tokens a LIST she gets 3 — unless the price was poisoned
or dodged, as it could be before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.protobuf_lists import pod, proto_list
from tests.proxy_fakes import FakeApiServer, GuardProcess, Record, write_settings

PODS = "/api/v1/namespaces/team-a/pods"
PROTOBUF = "application/vnd.kubernetes.protobuf"
ADMIN = {"Authorization": "Bearer admin-token"}
ALICE = {"Authorization": "Bearer alice-token"}
POLICY = """\
apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: pod-reads
      verbs: [list, watch]
      resources: [pods]
      quota: {rate: 1/h, burst: 12}
"""


class ListingApiServer(FakeApiServer):
    """Answers LISTs of the team-a pods with 300 objects, as protobuf when the client accepts it."""

    count = 300

    async def echo(self, request: web.Request) -> web.StreamResponse:
        if request.path != PODS:
            return await super().echo(request)
        self.seen.append(Record(request.method, request.path_qs, list(request.headers.items())))
        if PROTOBUF in request.headers.get("Accept", ""):
            body = proto_list([pod(f"p{i}") for i in range(self.count)])
            return web.Response(body=body, content_type=PROTOBUF)
        items = [{"metadata": {"name": f"p{i}", "namespace": "team-a", "resourceVersion": str(i + 1)}}
                 for i in range(self.count)]
        return web.json_response({"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "999"}, "items": items})


@pytest.fixture
async def api() -> AsyncIterator[ListingApiServer]:
    fake = ListingApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: ListingApiServer) -> AsyncIterator[GuardProcess]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    config = write_settings(tmp_path, [api.url], extra=f"policies: {tmp_path / 'policies'}\n")
    process = await GuardProcess(config).start()
    yield process
    await process.stop()


async def admitted(client: aiohttp.ClientSession, url: str, query: str = "", *, tries: int = 12,
                   accept: str = "application/json") -> int:
    """How many of `tries` LISTs by alice guard lets through."""
    passed = 0
    for _ in range(tries):
        async with client.get(url + PODS + query, headers={**ALICE, "Accept": accept}) as r:
            await r.read()
            assert r.status in (200, 429), r.status
            passed += r.status == 200
    return passed


async def teach(client: aiohttp.ClientSession, url: str, *, accept: str = "application/json") -> None:
    async with client.get(url + PODS, headers={**ADMIN, "Accept": accept}) as r:
        assert r.status == 200
        await r.read()
    await asyncio.sleep(1.1)  # guard measures a resource at most once a second


async def test_a_head_of_the_collection_does_not_make_it_cheap(guard: GuardProcess) -> None:
    """After a LIST taught 300 and a HEAD (which has no body) followed, LISTs still cost 4: 3 of 12
    (selected LISTs, which teach nothing themselves; the HEAD used to set the count to 0)."""
    async with aiohttp.ClientSession() as client:
        await teach(client, guard.url)
        async with client.head(guard.url + PODS, headers=ADMIN) as r:
            assert r.status == 200
        await asyncio.sleep(1.1)
        assert await admitted(client, guard.url, "?labelSelector=app%3Dx") == 3


async def test_protobuf_lists_are_counted(guard: GuardProcess) -> None:
    """A protobuf LIST of 300 teaches 300, as client-go controllers ask: 3 of 12 protobuf LISTs pass."""
    async with aiohttp.ClientSession() as client:
        await teach(client, guard.url, accept=PROTOBUF)
        assert await admitted(client, guard.url, accept=PROTOBUF) == 3


@pytest.mark.parametrize("query", [
    "?limit=1&resourceVersion=0",  # the watch cache ignores the limit
    "?labelSelector=app%3Dx",
    "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=5",
])
async def test_parameters_do_not_dodge_the_price(guard: GuardProcess, query: str) -> None:
    """LISTs from the cache and WatchList watches cost the whole collection: 3 of 12."""
    async with aiohttp.ClientSession() as client:
        await teach(client, guard.url)
        assert await admitted(client, guard.url, query) == 3


async def test_a_resource_never_measured_is_priced_conservatively(guard: GuardProcess) -> None:
    """Without any count, a LIST costs the rule's cap (10): 1 of 12 passes, not 12."""
    async with aiohttp.ClientSession() as client:
        assert await admitted(client, guard.url, "?resourceVersion=0") == 1
