"""Local verification of the cluster's service-account JWTs against its published JWKS.

`JwksSource` reads `/.well-known/openid-configuration`, then the `jwks_uri` path, through the cluster
(cached, refreshed when a token names an unknown `kid`, at most once per `min_refresh_interval`).
`verify_jwt` accepts RS256 and ES256 only — never `alg: none`, never HMAC — and checks issuer, expiry,
not-before and audience. Trade-off: unlike a TokenReview it cannot see that a bound token's pod or
secret was deleted, so such a token stays valid here until it expires. Never log a token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from guard.kube.errors import TooManyRequests, UpstreamError
from guard.kube.identity import AUTHENTICATED_GROUP, SERVICE_ACCOUNT_PREFIX, Identity

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Fetch = Callable[[str], Awaitable[dict[str, Any]]]
DISCOVERY_PATH = "/.well-known/openid-configuration"
LEEWAY = 60.0  # seconds of clock skew tolerated on exp/nbf, as the api-server's validator allows


class JwtRejected(Exception):
    """The token is the cluster's JWT (issuer matches) but is invalid: the caller gets 401."""


class JwksSource:
    """The cluster's issuer and signing keys, fetched through `fetch(path) -> JSON object`."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float] = time.monotonic,
                 max_age: float = 300.0, min_refresh_interval: float = 10.0) -> None:
        self._fetch = fetch
        self._clock = clock
        self._max_age = max_age
        self._min_refresh = min_refresh_interval
        self._issuer: str | None = None
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.fetches = 0

    async def issuer(self) -> str | None:
        await self._ensure(force=False)
        return self._issuer

    async def key(self, kid: str) -> PublicKey | None:
        """The key named `kid`; an unknown kid triggers one (rate-limited) refresh."""
        await self._ensure(force=False)
        if kid not in self._keys:
            await self._ensure(force=True)
        return self._keys.get(kid)

    async def _ensure(self, *, force: bool) -> None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
        if not (stale or force):
            return
        if self._attempted_at is not None and now - self._attempted_at < self._min_refresh:
            return  # a token naming random kids must not make guard hammer the api-server
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        task = self._refreshing
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._refreshing = None

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            discovery = await self._fetch(DISCOVERY_PATH)
            split = urlsplit(str(discovery["jwks_uri"]))
            jwks = await self._fetch(split.path + (f"?{split.query}" if split.query else ""))
            keys = {str(k["kid"]): parse_jwk(k) for k in jwks.get("keys", []) if _usable(k)}
            issuer = str(discovery["issuer"])
        except (UpstreamError, TooManyRequests, KeyError, TypeError, ValueError):
            return  # keep the last good keys; unknown tokens fall back to TokenReview
        self._issuer, self._keys, self._fetched_at = issuer, keys, self._clock()


def _usable(jwk: Mapping[str, Any]) -> bool:
    kty = jwk.get("kty")
    return "kid" in jwk and (kty == "RSA" or (kty == "EC" and jwk.get("crv") == "P-256"))


def parse_jwk(jwk: Mapping[str, Any]) -> PublicKey:
    """A public key from one RSA or P-256 JWK."""
    if jwk["kty"] == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()).public_key()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(text: str) -> int:
    return int.from_bytes(_b64(text), "big")


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes] | None:
    """(header, claims, signing input, signature) of a compact JWS, or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = json.loads(_b64(parts[0])), json.loads(_b64(parts[1]))
        signature = _b64(parts[2])
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


async def verify_jwt(token: str, source: JwksSource, *, audiences: tuple[str, ...],
                     now: float) -> dict[str, Any] | None:
    """The verified claims; None when the token is not the cluster's service-account JWT (ask
    TokenReview); JwtRejected when it is but fails a check."""
    decoded = _decode(token)
    if decoded is None:
        return None
    header, claims, signing_input, signature = decoded
    issuer = await source.issuer()
    if issuer is None or claims.get("iss") != issuer:
        return None
    if not str(claims.get("sub", "")).startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    if header.get("alg") not in ("RS256", "ES256"):
        raise JwtRejected("unsupported alg")
    key = await source.key(str(header.get("kid", "")))
    if key is None:
        return None
    check_signature(str(header["alg"]), key, signing_input, signature)
    check_claims(claims, audiences=audiences or (issuer,), now=now)
    return claims


def check_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            raise JwtRejected("alg does not match key")
    except InvalidSignature as e:
        raise JwtRejected("bad signature") from e


def check_claims(claims: Mapping[str, Any], *, audiences: tuple[str, ...], now: float) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise JwtRejected("exp/nbf missing or not numbers")
    if now >= exp + LEEWAY or now < nbf - LEEWAY:
        raise JwtRejected("expired or not yet valid")
    aud = claims.get("aud")
    token_audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not set(audiences) & set(token_audiences):
        raise JwtRejected("audience")


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """The Identity the api-server gives a bound service-account token."""
    user = str(claims["sub"])
    namespace = user[len(SERVICE_ACCOUNT_PREFIX):].partition(":")[0]
    kio = claims.get("kubernetes.io") or {}
    extra: dict[str, tuple[str, ...]] = {}
    for kind in ("pod", "node"):
        ref = kio.get(kind) or {}
        for attr in ("name", "uid"):
            if ref.get(attr):
                extra[f"authentication.kubernetes.io/{kind}-{attr}"] = (str(ref[attr]),)
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED_GROUP)
    uid = str((kio.get("serviceaccount") or {}).get("uid", ""))
    return Identity(user=user, groups=groups, uid=uid, extra=MappingProxyType(extra))
