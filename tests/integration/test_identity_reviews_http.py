"""The authenticator over real sockets: TokenReviews through `HttpReviewClient`, JWKS over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chaos.sim.oidc import Issuer
from guard.identity.authn import Authenticator, Credentials, HttpReviewClient, IdentitySettings, JwksSource
from guard.identity.impersonation import ImpersonationCheck
from guard.kube.errors import Forbidden, Unauthorized, UpstreamError
from guard.kube.identity import Identity
from tests.doubles import FakeClock

GUARD_TOKEN = "guard-own-token"
Server = Callable[[web.Application], Awaitable[TestServer]]


class FakeApiServer:
    """TokenReview, SubjectAccessReview and OIDC discovery like the api-server; counts what it is asked."""

    def __init__(self) -> None:
        self.issuer = Issuer()
        self.token_reviews = 0
        self.sars = 0
        self.seen_auth: set[str] = set()
        self.broken = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self.sar)
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/openid/v1/jwks", self.jwks)
        return app

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(self.issuer.discovery("https://10.96.0.1"))

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.issuer.jwks())

    async def token_review(self, request: web.Request) -> web.Response:
        self.seen_auth.add(request.headers.get("Authorization", ""))
        if self.broken:
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        self.token_reviews += 1
        body = await request.json()
        authenticated = body["spec"]["token"] == "good"
        status: dict[str, Any] = {"authenticated": authenticated}
        if authenticated:
            status["user"] = {"username": "alice", "groups": ["dev", "system:authenticated"]}
        return web.json_response({**body, "status": status}, status=201)

    async def sar(self, request: web.Request) -> web.Response:
        self.sars += 1
        body = await request.json()
        return web.json_response({**body, "status": {"allowed": body["spec"]["user"] == "admin"}}, status=201)


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
async def reviews(api: FakeApiServer, aiohttp_server: Server) -> AsyncIterator[HttpReviewClient]:
    server = await aiohttp_server(api.app())
    async with aiohttp.ClientSession() as session:
        yield HttpReviewClient(session, str(server.make_url("/")),
                               {"Authorization": f"Bearer {GUARD_TOKEN}"})


def bearer(token: str) -> Credentials:
    return Credentials(bearer_token=token, peer_certificate_der=None, remote_addr="127.0.0.1")


async def test_a_thousand_calls_with_one_token_send_one_review(api: FakeApiServer,
                                                               reviews: HttpReviewClient) -> None:
    """1,000 authentications of one token (concurrent and sequential) cost one TokenReview."""
    authn = Authenticator(IdentitySettings(), reviews)
    first = await asyncio.gather(*(authn.authenticate(bearer("good")) for _ in range(500)))
    for _ in range(500):
        assert (await authn.authenticate(bearer("good"))).user == "alice"
    assert {who.user for who in first} == {"alice"}
    assert api.token_reviews == 1
    assert api.seen_auth == {f"Bearer {GUARD_TOKEN}"}  # guard's own credential, not the caller's


async def test_a_bad_token_is_reviewed_once_per_failure_ttl(api: FakeApiServer,
                                                            reviews: HttpReviewClient) -> None:
    """A bad token sent 1,000 times over 31 (fake) seconds with a 10 s failure TTL: 4 reviews."""
    clock = FakeClock(0.0)
    authn = Authenticator(IdentitySettings(failure_ttl=10.0), reviews, clock=clock)
    for _ in range(1000):
        with pytest.raises(Unauthorized):
            await authn.authenticate(bearer("bad"))
        clock.now += 1 / 32
    assert api.token_reviews == 4  # at 0, 10, 20 and 30 s
    assert authn.stats.failures == 4


async def test_upstream_failure_is_an_upstream_error_and_not_cached(api: FakeApiServer,
                                                                    reviews: HttpReviewClient) -> None:
    """A 500 from the api-server is UpstreamError (502), and the next call reviews again."""
    authn = Authenticator(IdentitySettings(), reviews)
    api.broken = True
    with pytest.raises(UpstreamError):
        await authn.authenticate(bearer("good"))
    api.broken = False
    assert (await authn.authenticate(bearer("good"))).user == "alice"
    assert api.token_reviews == 1


async def test_unreachable_api_server_is_an_upstream_error() -> None:
    """Connection refused becomes UpstreamError, which is not an aiohttp error."""
    assert not issubclass(UpstreamError, aiohttp.ClientError)
    async with aiohttp.ClientSession() as session:
        client = HttpReviewClient(session, "http://127.0.0.1:1", {})
        with pytest.raises(UpstreamError):
            await Authenticator(IdentitySettings(), client).authenticate(bearer("good"))


async def test_service_account_jwts_verify_against_the_served_jwks(api: FakeApiServer,
                                                                   reviews: HttpReviewClient) -> None:
    """With jwks on, a bound token is verified from the cluster's discovery and JWKS: no TokenReview."""
    authn = Authenticator(IdentitySettings(jwks=True), reviews, jwks_source=JwksSource(reviews.get))
    who = await authn.authenticate(bearer(api.issuer.issue("team-a", "ci")))
    assert who.user == "system:serviceaccount:team-a:ci"
    assert api.token_reviews == 0
    with pytest.raises(Unauthorized):
        await authn.authenticate(bearer("bad"))
    assert api.token_reviews == 1


async def test_impersonation_reviews_go_over_http(api: FakeApiServer, reviews: HttpReviewClient) -> None:
    """SubjectAccessReviews reach the api-server once per (caller, target) and decide the outcome."""
    check = ImpersonationCheck(reviews)
    headers = {"Impersonate-User": "bob"}
    for _ in range(100):
        assert (await check.resolve(Identity("admin"), headers)).user == "bob"
    assert api.sars == 1
    with pytest.raises(Forbidden, match="cannot impersonate"):
        await check.resolve(Identity("mallory"), headers)
