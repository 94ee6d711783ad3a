"""Exhaustion figures (issue 13, items 1, 4 and 9): `guard serve` in front of the simulator, attacked at
ten times its review limits while a well-behaved tenant keeps working; the simulator's own record
counts the reviews that reached it.

- garbage tokens: 5 client addresses (127.0.0.11-15), each sending new random tokens at 10x the
  per-client TokenReview rate, together 10x the overall rate, over 40 connections;
- impersonation fan-out: mallory (a valid user with no rights) sends requests each naming a new user
  to impersonate with 30 groups and 30 extras, at 10x the per-caller review rate; and once the
  request that used to cost 245 reviews (64 groups, 180 extras).

The limits are scaled down from the documented defaults (docs/running.md) so the run is short; the
bounds are the token-bucket bounds burst + rate x elapsed. Figures are printed; GUARD_EXHAUSTION_SECONDS
lengthens each attack (5 s by default).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SimServer
from tests.proxy_fakes import spawn_guard

SECONDS = float(os.environ.get("GUARD_EXHAUSTION_SECONDS", "5"))
PER_CLIENT, OVERALL, PER_CALLER = (2.0, 5), (10.0, 20), (2.0, 5)  # (rate per second, burst)
ATTACKERS = [f"127.0.0.{i}" for i in range(11, 16)]
CONFIGMAPS = "/api/v1/namespaces/team-a/configmaps"
POLICY = """\
apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - {name: reads, quota: {rate: 100/s, burst: 100}}
"""


@dataclass
class Stack:
    sim: SimServer
    url: str


@pytest.fixture
def stack(sim_server: Callable[..., SimServer], tmp_path: Path) -> Iterator[Stack]:
    sim = sim_server()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    rate = "{{rate: {}/s, burst: {}}}"
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nclusters:\n  - name: sim\n    server: {sim.url}\n"
        f"    token: {sim.tokens['admin']}\naccessLog: {{enabled: false}}\n"
        f"policies: {tmp_path / 'policies'}\n"
        f"identity:\n  reviewBudget: {{perClient: {rate.format(*PER_CLIENT)}, "
        f"overall: {rate.format(*OVERALL)}}}\n"
        f"  impersonation: {{perCaller: {rate.format(*PER_CALLER)}}}\n")
    process, url, _ = spawn_guard(config)
    try:
        yield Stack(sim, url)
    finally:
        process.terminate()
        process.wait(timeout=20)


async def well_behaved(stack: Stack, stop: asyncio.Event) -> Counter[int]:
    """alice LISTs her configmaps ten times a second until `stop`; the statuses she got."""
    got: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {stack.sim.tokens['alice']}"}
    async with aiohttp.ClientSession() as client:
        while not stop.is_set():
            async with client.get(stack.url + CONFIGMAPS, headers=headers) as r:
                await r.read()
                got[r.status] += 1
            await asyncio.sleep(0.1)
    return got


async def paced(rate: float, seconds: float, send: Callable[[], object]) -> None:
    """Start `send()` `rate` times a second for `seconds`, without waiting for the answers."""
    tasks, started = [], time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        tasks.append(asyncio.ensure_future(send()))  # type: ignore[arg-type]
    await asyncio.gather(*tasks)


async def garbage_from(stack: Stack, address: str, seconds: float, seen: Counter[tuple[str, int]]) -> None:
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=8)
    async with aiohttp.ClientSession(connector=connector) as client:
        async def send() -> None:
            headers = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
            async with client.get(stack.url + "/api/v1/namespaces/team-a/pods", headers=headers) as r:
                await r.read()
                seen[(address, r.status)] += 1
        await paced(PER_CLIENT[0] * 10, seconds, send)


def bound(rate_burst: tuple[float, int], elapsed: float) -> int:
    return int(rate_burst[1] + rate_burst[0] * elapsed)


def show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


async def test_garbage_tokens_at_ten_times_the_limits(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """New garbage tokens at 10x the per-client and overall TokenReview rates: the simulator sees at
    most the overall bound of reviews, each address at most its own bound (the rest get 429, never
    502), and alice keeps >= 99 % success."""
    stop = asyncio.Event()
    alice = asyncio.ensure_future(well_behaved(stack, stop))
    await asyncio.sleep(0.5)  # alice's token is reviewed (once) before the flood
    before = stack.sim.state()["totals"]["tokenReviews"]
    seen: Counter[tuple[str, int]] = Counter()
    started = time.monotonic()
    await asyncio.gather(*(garbage_from(stack, a, SECONDS, seen) for a in ATTACKERS))
    elapsed = time.monotonic() - started
    reviews = stack.sim.state()["totals"]["tokenReviews"] - before
    stop.set()
    ok = await alice
    statuses = Counter(status for (_, status) in seen.elements())
    success = ok[200] / sum(ok.values())
    show(capsys, f"exhaustion garbage-tokens: {sum(statuses.values())} requests from {len(ATTACKERS)} "
         f"addresses at {PER_CLIENT[0] * 10:g}/s each (10x perClient {PER_CLIENT[0]:g}/s; together "
         f"{PER_CLIENT[0] * 10 * len(ATTACKERS) / OVERALL[0]:g}x overall {OVERALL[0]:g}/s) "
         f"over {elapsed:.1f} s: "
         f"TokenReviews at the api-server {reviews} (bound {bound(OVERALL, elapsed)}), "
         f"401 {statuses[401]}, 429 {statuses[429]}, 502 {statuses[502]}; "
         f"well-behaved {ok[200]}/{sum(ok.values())} ({success:.1%})")
    assert reviews <= bound(OVERALL, elapsed)
    for address in ATTACKERS:
        assert seen[(address, 401)] <= bound(PER_CLIENT, elapsed), address
    assert set(statuses) <= {401, 429} and statuses[429] > 0
    assert success >= 0.99


async def test_impersonation_fan_out_at_ten_times_the_limits(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """mallory asks for 1 new user + 30 groups + 30 extras per request at 10x her review rate: each
    request costs at most one review (the first denial ends it), the simulator sees at most the
    per-caller bound, the rest get 429; the 245-review request is a 400 that costs none."""
    mallory = {"Authorization": f"Bearer {stack.sim.tokens['mallory']}"}
    stop = asyncio.Event()
    alice = asyncio.ensure_future(well_behaved(stack, stop))
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as client:
        async with client.get(stack.url + "/version", headers=mallory) as r:  # her own token, reviewed once
            await r.read()
        before = stack.sim.state()["totals"]["subjectAccessReviews"]
        huge = [("Impersonate-User", "bob"), *[("Impersonate-Group", f"g{i}") for i in range(64)],
                *[(f"Impersonate-Extra-k{i % 9}", f"v{i}") for i in range(180)]]
        async with client.get(stack.url + CONFIGMAPS,
                              headers=[*mallory.items(), *huge]) as r:
            body = await r.json()
            assert (r.status, body["reason"]) == (400, "BadRequest")
        assert stack.sim.state()["totals"]["subjectAccessReviews"] == before

        async def send() -> None:
            ask = [("Impersonate-User", f"user-{secrets.token_hex(4)}"),
                   *[("Impersonate-Group", f"g{i}") for i in range(30)],
                   *[(f"Impersonate-Extra-k{i % 6}", f"v{i}") for i in range(30)]]
            async with client.get(stack.url + CONFIGMAPS,
                                  headers=[*mallory.items(), *ask]) as r:
                await r.read()
                statuses[r.status] += 1

        started = time.monotonic()
        await paced(PER_CALLER[0] * 10, SECONDS, send)
        elapsed = time.monotonic() - started
    reviews = stack.sim.state()["totals"]["subjectAccessReviews"] - before
    stop.set()
    ok = await alice
    success = ok[200] / sum(ok.values())
    show(capsys, f"exhaustion impersonation: {sum(statuses.values())} requests of 1 user + 30 groups + 30 "
         f"extras at {PER_CALLER[0] * 10:g}/s (10x perCaller {PER_CALLER[0]:g}/s) over {elapsed:.1f} s: "
         f"SubjectAccessReviews at the api-server {reviews} (bound {bound(PER_CALLER, elapsed)}; "
         f"61 per request unbounded), 403 {statuses[403]}, 429 {statuses[429]}; 64 groups + 180 extras: "
         f"400 with 0 reviews; well-behaved {ok[200]}/{sum(ok.values())} ({success:.1%})")
    assert reviews <= bound(PER_CALLER, elapsed)
    assert set(statuses) <= {403, 429} and statuses[429] > 0 and statuses[403] == reviews
    assert success >= 0.99
