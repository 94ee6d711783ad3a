"""Who is calling: the `Identity` value every later step of the request path reads.

Pure: no I/O, no aiohttp. The adapters that establish an identity (client certificates,
TokenReview, service-account JWTs) live in `guard.identity.authn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
AUTHENTICATED_GROUP = "system:authenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Identity:
    """An authenticated caller, in the api-server's `user.Info` shape."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) when the caller is a service account, else None."""
        if not self.user.startswith(SERVICE_ACCOUNT_PREFIX):
            return None
        namespace, _, name = self.user[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
        return (namespace, name) if namespace and name else None

    @property
    def is_anonymous(self) -> bool:
        return self.user == ANONYMOUS_USER


ANONYMOUS = Identity(user=ANONYMOUS_USER, groups=(UNAUTHENTICATED_GROUP,))
