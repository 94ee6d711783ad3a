"""Isolation of runaway clients as admission sees it: the seam to where they are tracked
(`guard.federation.quarantine.QuarantineBoard`), each tenant's quarantine policy, and the bucket a
quarantined client is held to. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from guard.admission.store import Limit
from guard.policy.model import Quarantine, TenantPolicy

Quarantines = Mapping[str, Quarantine]
"""Tenant name -> its `spec.quarantine`, for the tenants that have one."""


class Isolation(Protocol):
    """Where runaway clients are tracked (`guard.federation.quarantine.QuarantineBoard`)."""

    def is_quarantined(self, client_key: str) -> object | None: ...

    def report_rejection(self, client_key: str, policy: Quarantine, *, tenant: str = "") -> bool: ...


def quarantines_of(policies: Sequence[TenantPolicy]) -> dict[str, Quarantine]:
    return {p.name: p.quarantine for p in policies if p.quarantine is not None}


def isolation_limit(policy: Quarantine | None) -> Limit | None:
    """The bucket a quarantined client gets; None (reject everything) without a positive rate."""
    if policy is None or not policy.rate:
        return None
    return Limit(policy.rate, policy.burst or max(1.0, policy.rate))
