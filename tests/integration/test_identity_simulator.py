"""guard's identity adapters against the simulated api-server itself, read from its record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from guard.identity.authn import Authenticator, Credentials, HttpReviewClient, IdentitySettings, JwksSource
from guard.identity.impersonation import ImpersonationCheck
from guard.kube.errors import Forbidden, Unauthorized
from guard.kube.identity import Identity

sim_app = pytest.importorskip("chaos.sim.app")
sim_options = pytest.importorskip("chaos.sim.options")
sim_simulation = pytest.importorskip("chaos.sim.simulation")

Server = Callable[[web.Application], Awaitable[TestServer]]
TOKENS = 'guard-tok,guard,1,"system:masters"\nalice-tok,alice,2,"dev"\n'


@pytest.fixture
async def cluster(tmp_path: Path, aiohttp_server: Server) -> AsyncIterator[tuple[Any, HttpReviewClient]]:
    (tmp_path / "tokens.csv").write_text(TOKENS)
    sim = sim_simulation.Simulation.from_options(sim_options.SimOptions(token_file=tmp_path / "tokens.csv"))
    server = await aiohttp_server(sim_app.build_app(sim))
    async with aiohttp.ClientSession() as session:
        yield sim, HttpReviewClient(session, str(server.make_url("/")), {"Authorization": "Bearer guard-tok"})


def bearer(token: str) -> Credentials:
    return Credentials(bearer_token=token, peer_certificate_der=None)


async def test_one_token_reviewed_once_by_the_simulator(cluster: tuple[Any, HttpReviewClient]) -> None:
    """1,000 calls with alice's token: the simulator records one TokenReview, for alice."""
    sim, reviews = cluster
    authn = Authenticator(IdentitySettings(), reviews)
    for _ in range(1000):
        who = await authn.authenticate(bearer("alice-tok"))
    assert who.user == "alice" and "dev" in who.groups
    assert sim.recorder.state()["tokenReviews"] == {"alice": 1}


async def test_bad_token_reviewed_once_per_failure_ttl(cluster: tuple[Any, HttpReviewClient]) -> None:
    """A bad token 1,000 times within one failure TTL: one failed TokenReview."""
    sim, reviews = cluster
    authn = Authenticator(IdentitySettings(), reviews)
    for _ in range(1000):
        with pytest.raises(Unauthorized):
            await authn.authenticate(bearer("wrong"))
    assert sim.recorder.state()["totals"]["tokenReviewsFailed"] == 1


async def test_simulator_service_account_tokens_verify_locally(cluster: tuple[Any, HttpReviewClient]) -> None:
    """A token from the simulator's issuer verifies against the JWKS it serves, with no TokenReview."""
    sim, reviews = cluster
    authn = Authenticator(IdentitySettings(jwks=True), reviews, jwks_source=JwksSource(reviews.get))
    who = await authn.authenticate(bearer(sim.issuer.issue("default", "builder")))
    assert who.user == "system:serviceaccount:default:builder"
    assert sim.recorder.state()["totals"]["tokenReviews"] == 0


async def test_impersonation_decided_by_the_simulators_rbac(cluster: tuple[Any, HttpReviewClient]) -> None:
    """system:masters may impersonate; alice (no RBAC) may not."""
    _, reviews = cluster
    check = ImpersonationCheck(reviews)
    master = Identity("guard", ("system:masters", "system:authenticated"))
    assert (await check.resolve(master, {"Impersonate-User": "bob"})).user == "bob"
    with pytest.raises(Forbidden):
        await check.resolve(Identity("alice", ("dev", "system:authenticated")), {"Impersonate-User": "bob"})
