"""Who is calling: static tokens, client certificates, service-account JWTs, anonymous.

Mirrors the api-server's authenticators: a static token file (`token,user,uid,"g1,g2"`), client
certificates verified by the TLS layer (CN = user, O = groups), bound service-account tokens from
the simulator's issuer, and anonymous only when enabled. It must never log or echo a token.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"


class TokenFileError(ValueError):
    """The token file cannot be read or parsed; the message names the file and line."""


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """The `UserInfo` shape of TokenReview and SelfSubjectReview."""
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


class JWTVerifier(Protocol):
    def verify(self, token: str) -> tuple[str, str, str] | None: ...


def with_authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    return groups if AUTHENTICATED in groups else (*groups, AUTHENTICATED)


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)


def load_token_file(path: Path) -> dict[str, User]:
    try:
        text = path.read_text()
    except OSError as e:
        raise TokenFileError(f"cannot read token file {path}: {e.strerror or e}") from e
    tokens: dict[str, User] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        if len(row) < 3:
            raise TokenFileError(f'{path}:{number}: expected token,user,uid[,"groups"]')
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[row[0].strip()] = User(row[1].strip(), row[2].strip(), with_authenticated(groups))
    return tokens


@dataclass
class Authenticator:
    tokens: dict[str, User] = field(default_factory=dict)
    anonymous: bool = False
    jwt: JWTVerifier | None = None

    def from_token(self, token: str) -> User | None:
        user = self.tokens.get(token)
        if user is not None or self.jwt is None:
            return user
        verified = self.jwt.verify(token)
        if verified is None:
            return None
        name, uid, namespace = verified
        return User(name, uid, service_account_groups(namespace))

    def from_cert(self, peercert: Mapping[str, Any] | None) -> User | None:
        if not peercert:
            return None
        cn, orgs = "", []
        for rdn in peercert.get("subject", ()):
            for attr, value in rdn:
                if attr == "commonName":
                    cn = value
                elif attr == "organizationName":
                    orgs.append(value)
        return User(cn, "", with_authenticated(tuple(orgs))) if cn else None

    def anonymous_user(self) -> User | None:
        return User(ANONYMOUS, "", (UNAUTHENTICATED,)) if self.anonymous else None
