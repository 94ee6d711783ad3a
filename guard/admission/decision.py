"""What the admission step answers, and the seam the proxy calls it through.

Pure values and a Protocol: no aiohttp, no I/O. The real controller lives in
`guard.admission.controller`; `AdmitAll` is what runs when no policies are configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

from guard.admission.rules import default_rules
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo

Outcome = Literal["admitted", "exempt", "queued", "shadow", "rejected"]


class Verdict(NamedTuple):
    """The decision for one request (an immutable NamedTuple: one is built per request, in a
    fraction of a frozen dataclass's time).

    outcome: admitted / exempt (never limited) / queued (admitted after waiting) / shadow
    (would have been rejected; admitted because the rule is in shadow mode) / rejected.
    retry_after: whole seconds the client should wait (rejected only).
    headers: response headers to add (tenant and rule ids, RateLimit-Policy, RateLimit).
    """

    outcome: Outcome
    tenant: str = ""
    rule: str = ""
    retry_after: int = 0
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def admitted(self) -> bool:
        return self.outcome != "rejected"


def _nothing() -> None:
    return None


class Ticket(NamedTuple):
    """An admitted (or rejected) request. `release()` frees its concurrency seat; call it once,
    when the response has been fully sent (for a watch: when the watch ends)."""

    verdict: Verdict
    release: Callable[[], None] = _nothing


class Admission(Protocol):
    """The admit step as the pipeline and the debug pages see it."""

    async def admit(self, identity: Identity, info: RequestInfo, cluster: str) -> Ticket:
        """Decide; may wait in a fair queue up to the priority level's max wait."""
        ...

    def tenant_of(self, identity: Identity, info: RequestInfo, cluster: str) -> str | None:
        """The tenant whose rule governs the request, without charging it; None when the request is
        exempt (the emergency brake never sheds it: guard.admission.shedding)."""
        ...

    def observe_list(self, cluster: str, info: RequestInfo, count: int) -> None:
        """A LIST of `info`'s collection returned `count` objects: price the next ones by it."""
        ...

    def snapshot_buckets(self) -> list[dict[str, object]]:
        """/debug/guard/buckets."""
        ...

    def snapshot_queues(self) -> list[dict[str, object]]:
        """/debug/guard/queues."""
        ...


class AdmitAll:
    """Admission with no policies: everything is admitted, nothing is kept."""

    _ticket = Ticket(Verdict(outcome="admitted"))

    async def admit(self, identity: Identity, info: RequestInfo, cluster: str) -> Ticket:
        return self._ticket

    def tenant_of(self, identity: Identity, info: RequestInfo, cluster: str) -> str | None:
        """No tenants; exempt by the default exempt rules (guard.admission.config.DEFAULT_EXEMPT)."""
        match = default_rules().match(identity, info, cluster)
        return None if match.exempt else ""

    def observe_list(self, cluster: str, info: RequestInfo, count: int) -> None:
        return None

    def snapshot_buckets(self) -> list[dict[str, object]]:
        return []

    def snapshot_queues(self) -> list[dict[str, object]]:
        return []
