"""The seam between the admission logic and where bucket state lives.

`QuotaStore` is implemented by the embedded in-process store (`guard.admission.embedded`) and
by the Redis-backed lease store (`guard.federation.leases`). One behaviour suite runs against
both. The hot path (`take`) is synchronous and never awaits: a store that needs the network
refills in the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from guard.policy.model import FailMode


@dataclass(frozen=True)
class Limit:
    """A token bucket: `rate` tokens per second, at most `burst` tokens banked."""

    rate: float
    burst: float
    fail_mode: FailMode = "local"


class Take(NamedTuple):
    """The answer of one `take` (an immutable NamedTuple: one is built per request).

    allowed: the cost was debited.
    remaining: tokens left after this take (>= 0).
    retry_after: seconds until `cost` tokens would be available (0 when allowed).
    reset_after: seconds until the bucket is full again.
    """

    allowed: bool
    remaining: float
    retry_after: float
    reset_after: float


class QuotaStore(Protocol):
    """Where token buckets live. Keys are opaque strings built by the admission step."""

    def take(self, key: str, limit: Limit, cost: float = 1.0) -> Take:
        """Debit `cost` tokens from bucket `key` if available. Never blocks."""
        ...

    def peek(self, key: str, limit: Limit) -> Take:
        """The bucket's state without debiting (for headers and debug dumps)."""
        ...

    def snapshot(self) -> list[dict[str, object]]:
        """What this replica holds of each bucket, for /debug/guard/buckets."""
        ...

    async def start(self) -> None:
        """Start background work (refills, heartbeats). Idempotent."""
        ...

    async def close(self) -> None:
        """Stop background work and release connections."""
        ...
