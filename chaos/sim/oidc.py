"""The simulator's service-account token issuer: bound-token JWTs, their JWKS and OIDC discovery.

It signs tokens the way the api-server's TokenRequest does (RS256, `kid` = base64url SHA-256 of the
public key's DER, the bound-token claims) so that guard's local JWKS verification can be tested against
something shaped like the real thing. It must never be used outside the test bed: the key lives in memory
and is made fresh per process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
JWKS_PATH = "/openid/v1/jwks"
DISCOVERY_PATH = "/.well-known/openid-configuration"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Issuer:
    """Issues and verifies service-account JWTs with one in-memory RSA key."""

    def __init__(self, issuer_url: str = DEFAULT_ISSUER, *, clock: Callable[[], float] = time.time) -> None:
        self.issuer_url = issuer_url
        self._clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha256(der).digest())

    def issue(self, namespace: str, name: str, *, uid: str | None = None,
              audience: str | Sequence[str] = DEFAULT_ISSUER, expires_in: int = 3600) -> str:
        """A bound service-account token for `system:serviceaccount:<namespace>:<name>` (one audience or
        several, as a TokenRequest's `spec.audiences`)."""
        now = int(self._clock())
        claims = {
            "iss": self.issuer_url,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": [audience] if isinstance(audience, str) else list(audience),
            "exp": now + expires_in,
            "iat": now,
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, name))},
            },
        }
        return self.sign({"alg": "RS256", "kid": self.kid, "typ": "JWT"}, claims)

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign any header and claims with the issuer's key (tests use it to forge odd tokens)."""
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token: str) -> tuple[str, str, str] | None:
        """(user, uid, namespace) when `token` is one of ours, unexpired; else None."""
        claims = self._verified_claims(token)
        if claims is None or claims.get("iss") != self.issuer_url:
            return None
        now = self._clock()
        if not claims.get("nbf", 0) - 60 <= now < claims.get("exp", 0) + 60:
            return None
        kio = claims.get("kubernetes.io", {})
        sa = kio.get("serviceaccount", {})
        return str(claims.get("sub", "")), str(sa.get("uid", "")), str(kio.get("namespace", ""))

    def _verified_claims(self, token: str) -> dict[str, Any] | None:
        try:
            head, body, sig = token.split(".")
            header = json.loads(b64url_decode(head))
            if header.get("alg") != "RS256" or header.get("kid") != self.kid:
                return None
            self._key.public_key().verify(
                b64url_decode(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = json.loads(b64url_decode(body))
        except (ValueError, InvalidSignature):
            return None
        return claims if isinstance(claims, dict) else None

    def jwks(self) -> dict[str, Any]:
        """The key set served at /openid/v1/jwks."""
        numbers = self._key.public_key().public_numbers()
        key = {"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
               "n": _uint(numbers.n), "e": _uint(numbers.e)}
        return {"keys": [key]}

    def discovery(self, issuer_url: str | None = None) -> dict[str, Any]:
        """The /.well-known/openid-configuration document, as the api-server serves it."""
        base = issuer_url or self.issuer_url
        return {
            "issuer": self.issuer_url,
            "jwks_uri": base.rstrip("/") + JWKS_PATH,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
