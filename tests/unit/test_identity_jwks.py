"""Local verification of service-account JWTs against the cluster's JWKS."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from chaos.sim.oidc import DISCOVERY_PATH, JWKS_PATH, Issuer, b64url
from guard.identity.authn import Authenticator, Credentials, IdentitySettings, JwksSource
from guard.kube.errors import Unauthorized
from tests.doubles import FakeClock

NOW = 1_700_000_000.0


class Cluster:
    """Serves discovery and JWKS like the api-server, answers every TokenReview with 'no', counts."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.fetches: list[str] = []
        self.reviews = 0
        self.extra_keys: list[dict[str, Any]] = []

    async def fetch(self, path: str) -> dict[str, Any]:
        self.fetches.append(path)
        if path == DISCOVERY_PATH:
            return self.issuer.discovery("https://10.0.0.1:443")
        assert path == JWKS_PATH
        return {"keys": self.issuer.jwks()["keys"] + self.extra_keys}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        return {"status": {"authenticated": False}}


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(clock=lambda: NOW)


@pytest.fixture
def cluster(issuer: Issuer) -> Cluster:
    return Cluster(issuer)


def authenticator(cluster: Cluster, *, now: float = NOW, **settings: Any) -> Authenticator:
    clock = FakeClock(0.0)
    return Authenticator(IdentitySettings(jwks=True, **settings), cluster, clock=clock,
                         jwks_source=JwksSource(cluster.fetch, clock=clock), wall_clock=lambda: now)


def bearer(t: str) -> Credentials:
    return Credentials(bearer_token=t, peer_certificate_der=None)


def claims(issuer: Issuer, **overrides: Any) -> dict[str, Any]:
    base = {"iss": issuer.issuer_url, "sub": "system:serviceaccount:ns:sa",
            "aud": [issuer.issuer_url], "exp": NOW + 600, "nbf": NOW, "iat": NOW}
    return {**base, **overrides}


def unsigned(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}."


async def test_good_token_is_verified_locally(cluster: Cluster, issuer: Issuer) -> None:
    """A bound token from the cluster's issuer becomes the service account, with no TokenReview."""
    token = issuer.issue("team-a", "builder", uid="sa-uid")
    who = await authenticator(cluster).authenticate(bearer(token))
    assert who.user == "system:serviceaccount:team-a:builder"
    assert who.uid == "sa-uid"
    assert who.groups == ("system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated")
    assert who.service_account == ("team-a", "builder")
    assert "authentication.kubernetes.io/credential-id" in who.extra
    assert cluster.reviews == 0


@pytest.mark.parametrize("case", ["expired", "not-yet-valid", "wrong-aud", "alg-none", "alg-hs256",
                                  "forged-with-our-kid", "tampered-claims"])
async def test_bad_tokens_are_rejected_locally(cluster: Cluster, issuer: Issuer, case: str) -> None:
    """Each forged or invalid cluster JWT gets 401 without reaching the api-server."""
    header = {"alg": "RS256", "kid": issuer.kid}
    token = {
        "expired": lambda: issuer.sign(header, claims(issuer, exp=NOW - 3600)),
        "not-yet-valid": lambda: issuer.sign(header, claims(issuer, nbf=NOW + 3600)),
        "wrong-aud": lambda: issuer.sign(header, claims(issuer, aud=["somebody-else"])),
        "alg-none": lambda: unsigned({"alg": "none", "kid": issuer.kid}, claims(issuer)),
        "alg-hs256": lambda: unsigned({"alg": "HS256", "kid": issuer.kid}, claims(issuer)) + "c2ln",
        "forged-with-our-kid": lambda: Issuer(issuer.issuer_url).sign(header, claims(issuer)),
        "tampered-claims": lambda: _tamper(issuer.issue("ns", "sa")),
    }[case]()
    with pytest.raises(Unauthorized):
        await authenticator(cluster).authenticate(bearer(token))
    assert cluster.reviews == 0


def _tamper(token: str) -> str:
    head, _, sig = token.split(".")
    body = b64url(json.dumps({"iss": "https://kubernetes.default.svc.cluster.local",
                              "sub": "system:serviceaccount:kube-system:admin",
                              "aud": ["https://kubernetes.default.svc.cluster.local"],
                              "exp": NOW + 600}).encode())
    return f"{head}.{body}.{sig}"


async def test_configured_audiences_replace_the_default(cluster: Cluster, issuer: Issuer) -> None:
    """With audiences set, a token for the issuer audience alone is refused, one for 'guard' accepted."""
    authn = authenticator(cluster, audiences=("guard",))
    with pytest.raises(Unauthorized):
        await authn.authenticate(bearer(issuer.issue("ns", "sa")))
    assert (await authn.authenticate(bearer(issuer.issue("ns", "sa", audience="guard")))).user.endswith(":sa")


async def test_unknown_issuer_or_opaque_token_goes_to_token_review(cluster: Cluster) -> None:
    """Tokens that are not this cluster's JWTs are left to TokenReview."""
    authn = authenticator(cluster)
    other = Issuer("https://elsewhere.example")
    for token in ("opaque-static-token", other.issue("ns", "sa")):
        with pytest.raises(Unauthorized):
            await authn.authenticate(bearer(token))
    assert cluster.reviews == 2


async def test_unknown_kid_refreshes_keys_at_most_once_per_interval(cluster: Cluster, issuer: Issuer) -> None:
    """A flood of tokens naming unknown kids refetches the JWKS once, then falls back to TokenReview."""
    authn = authenticator(cluster)
    await authn.authenticate(bearer(issuer.issue("ns", "sa")))
    fetched = len(cluster.fetches)
    for i in range(20):
        with pytest.raises(Unauthorized):
            await authn.authenticate(bearer(issuer.sign({"alg": "RS256", "kid": f"k{i}"}, claims(issuer))))
    assert len(cluster.fetches) - fetched <= 2  # discovery + jwks, once
    assert cluster.reviews == 20


async def test_es256_tokens_are_verified(cluster: Cluster, issuer: Issuer) -> None:
    """An ES256 key published in the JWKS verifies a token signed with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    cluster.extra_keys.append({"kty": "EC", "crv": "P-256", "kid": "ec-1",
                               "x": b64url(numbers.x.to_bytes(32, "big")),
                               "y": b64url(numbers.y.to_bytes(32, "big"))})
    signing_input = unsigned({"alg": "ES256", "kid": "ec-1"}, claims(issuer))[:-1]
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    assert (await authenticator(cluster).authenticate(bearer(token))).user == "system:serviceaccount:ns:sa"
    assert cluster.reviews == 0


def test_issuer_verifies_its_own_tokens(issuer: Issuer) -> None:
    """The simulator's issuer accepts its tokens and refuses another issuer's."""
    assert issuer.verify(issuer.issue("ns", "sa", uid="u")) == ("system:serviceaccount:ns:sa", "u", "ns")
    assert issuer.verify(Issuer(issuer.issuer_url).issue("ns", "sa")) is None
    assert issuer.verify("not-a-jwt") is None


def test_issuer_takes_several_audiences(issuer: Issuer) -> None:
    """A TokenRequest's audience list lands in the token's aud claim as a flat list."""
    token = issuer.issue("ns", "sa", audience=["a", "b"])
    body = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert body["aud"] == ["a", "b"]
