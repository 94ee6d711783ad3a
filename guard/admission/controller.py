"""`AdmissionController`: the admission step of the request path, implementing `Admission`.

match the request to a rule -> price it -> take its cost from the rule's bucket (through the
`QuotaStore`, so the Redis store plugs in unchanged) -> per-rule in-flight and watch caps ->
a seat of its priority level, queuing fairly when none is free -> a `Ticket`. A request that
needs no queue is decided without suspending. Shadow rules count what they would reject and
admit it. A client (the user, never its token) that the `Isolation` seam reports quarantined is
charged to its tenant's quarantine quota instead of its rule's, and each rejection of a tenant
with a quarantine policy is reported back to that seam. The policy set is swapped whole on
reload; a bad reload keeps the last good set. Never reads the wall clock (injected) and never
logs identities or tokens. It runs past 300 lines because these steps share one policy-set
swap and one ticket lifecycle, which read as one sequence here and would be split mid-step elsewhere.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from guard.admission.concurrency import InflightCaps
from guard.admission.config import AdmissionSettings
from guard.admission.cost import ObjectCounts, request_cost
from guard.admission.decision import Outcome, Ticket, Verdict
from guard.admission.fairqueue import FairQueue
from guard.admission.isolation import Isolation, Quarantines, isolation_limit, quarantines_of
from guard.admission.rules import CompiledRule, Match, PolicySet, compile_policies
from guard.admission.stats import AdmissionStats
from guard.admission.store import QuotaStore
from guard.kube.errors import ConfigError
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo
from guard.policy.loading import load_policies
from guard.policy.model import TenantPolicy
from guard.policy.placement import Labels

Headers = tuple[tuple[str, str], ...]
MAX_RETRY_AFTER = 60
_STREAK_STEP = 10  # consecutive rejections of one flow that double its Retry-After
_STREAKS_KEPT = 10_000
# What the client reads in the 429 Status; names no tenant or rule (headers carry opaque ids).
MESSAGES = {
    "quota": "Too many requests: over quota, please try again later.",
    "inflight": "Too many requests in flight for this quota, please try again later.",
    "watches": "Too many watches open for this quota, please try again later.",
    "queue-full": "Too many requests queued at this priority level, please try again later.",
    "queue-wait": "Timed out waiting for a seat at this priority level, please try again later.",
    "quarantined": "Too many requests: this client is isolated for sending too many, please try again later.",
}
def _wake(granted: asyncio.Future[None]) -> None:
    if not granted.done():
        granted.set_result(None)


class _Held:
    """The seat and cap an admitted request holds; released once."""

    __slots__ = ("caps", "key", "level", "width")

    def __init__(self, caps: InflightCaps | None, key: str, level: FairQueue | None, width: int) -> None:
        self.caps, self.key, self.level, self.width = caps, key, level, width

    def release(self) -> None:
        if self.caps is not None:
            self.caps.release(self.key)
            self.caps = None
        if self.level is not None:
            self.level.release(self.width)
            self.level = None


class AdmissionController:
    """Admission by tenant policies, on any `QuotaStore`."""

    def __init__(
        self,
        settings: AdmissionSettings,
        store: QuotaStore,
        policies: PolicySet | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        counts: ObjectCounts | None = None,
        isolation: Isolation | None = None,
        quarantines: Quarantines | None = None,
        clusters: Mapping[str, Labels] | None = None,
    ) -> None:
        self.settings = settings
        self.clusters: dict[str, Labels] = dict(clusters or {})
        """The clusters this process fronts and their labels, for placement and overrides."""
        self.isolation = isolation
        self.quarantines: Quarantines = dict(quarantines or {})
        self.store = store
        self.policies = policies if policies is not None else compile_policies([], settings)[0]
        self.counts = counts if counts is not None else ObjectCounts()
        self.stats = AdmissionStats()
        self._clock = clock
        self._sleep = sleep
        self._levels = {lvl.name: FairQueue(lvl) for lvl in settings.priority_levels}
        self._caps = InflightCaps()
        self._streaks: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        """Requests held for a token, per bucket key (bounded by what the bucket can serve in time)."""

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | Path],
        settings: AdmissionSettings,
        store: QuotaStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        isolation: Isolation | None = None,
        clusters: Mapping[str, Labels] | None = None,
    ) -> AdmissionController:
        """A controller for the policies under `paths`; raises ConfigError listing every problem."""
        policies, problems = load_policies(paths)
        return cls.from_policies(policies, settings, store, clock=clock, sleep=sleep, isolation=isolation,
                                 problems=problems, clusters=clusters)

    @classmethod
    def from_policies(
        cls,
        policies: Sequence[TenantPolicy],
        settings: AdmissionSettings,
        store: QuotaStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        isolation: Isolation | None = None,
        problems: Sequence[str] = (),
        clusters: Mapping[str, Labels] | None = None,
    ) -> AdmissionController:
        """A controller for already parsed policies (e.g. a signed bundle's); raises ConfigError."""
        compiled, more = compile_policies(policies, settings, clusters)
        if problems or more:
            raise ConfigError([*problems, *more])
        return cls(settings, store, compiled, clock=clock, sleep=sleep, isolation=isolation,
                   quarantines=quarantines_of(policies), clusters=clusters)

    def reload(self, paths: Sequence[str | Path]) -> list[str]:
        """Swap in the policies under `paths`; on any problem keep the current set and return them."""
        policies, problems = load_policies(paths)
        return self.apply(policies, problems=problems)

    def apply(self, policies: Sequence[TenantPolicy], *, problems: Sequence[str] = ()) -> list[str]:
        """Swap in `policies` at once (bucket state lives in the store and stays); on any problem
        keep the current set and return every problem."""
        compiled, more = compile_policies(policies, self.settings, self.clusters)
        found = [*problems, *more]
        self.stats.reloads += 1
        self.stats.last_reload_problems = found
        if found:
            self.stats.reload_failures += 1
            return found
        self.policies, self.quarantines = compiled, quarantines_of(policies)
        return []

    def observe_list(self, cluster: str, info: RequestInfo, count: int) -> None:
        """Record how many objects a LIST returned, to price the next LISTs of that resource."""
        self.counts.observe(cluster, info.api_group, info.resource, info.namespace, count)

    def tenant_of(self, identity: Identity, info: RequestInfo, cluster: str) -> str | None:
        """The tenant whose rule governs the request (None: an exempt rule), charging nothing."""
        match = self.policies.match(identity, info, cluster)
        return None if match.exempt else match.tenant

    async def admit(self, identity: Identity, info: RequestInfo, cluster: str) -> Ticket:
        ticket = await self._admit(identity, info, cluster)
        verdict = ticket.verdict
        self.stats.decisions[(cluster, verdict.tenant, verdict.rule, verdict.outcome)] += 1
        return ticket

    async def _admit(self, identity: Identity, info: RequestInfo, cluster: str) -> Ticket:
        match = self.policies.match(identity, info, cluster)
        rule = match.rule
        if rule.exempt:
            return self._exempt(match, info, identity.user, cluster)
        cost = (
            request_cost(info, rule.list_cost, self.counts.get(cluster, info))
            if info.verb in ("list", "watch")
            else 1.0
        )
        headers, reason, retry = self._quota(match, cost, identity.user)
        outcome: Outcome = "admitted"
        if reason == "quota" and self._may_wait(match, retry):
            headers, reason, retry = await self._wait_for_tokens(match, cost, identity.user, retry)
            outcome = "queued"
        cap_key = ""
        if not reason:
            cap_key, reason = self._cap(match, info)
        if reason:
            return self._refuse(match, reason, retry, headers, identity.user, cluster)
        held = _Held(self._caps if cap_key else None, cap_key, None, 0)
        if info.is_long_running:
            return self._verdict(rule, outcome, headers, held, match.flow)
        level = self._levels[rule.level]
        held.width = level.width(cost)
        if level.try_acquire(held.width):
            held.level = level
            return self._verdict(rule, outcome, headers, held, match.flow)
        return await self._queue(match, level, held, headers, identity.user, cluster)

    def _exempt(self, match: Match, info: RequestInfo, client: str, cluster: str) -> Ticket:
        """An exempt request never queues nor takes a seat; only its rule's generous per-identity
        quota and in-flight cap hold it (no quarantine: system identities are not tenants)."""
        rule = match.rule
        if rule.limit is not None:
            take = self.store.take(match.bucket_key, rule.limit, 1.0)
            if not take.allowed:
                return self._refuse(match, "quota", take.retry_after, rule.id_headers, client, cluster)
        cap_key, reason = self._cap(match, info)
        if reason:
            return self._refuse(match, reason, 1.0, rule.id_headers, client, cluster)
        return self._verdict(rule, "exempt", rule.id_headers, _Held(self._caps if cap_key else None,
                                                                    cap_key, None, 0), match.flow)

    def _quota(self, match: Match, cost: float, client: str) -> tuple[Headers, str, float]:
        rule = match.rule
        if self.isolation is not None and self.isolation.is_quarantined(client) is not None:
            return self._isolated(rule, cost, client)
        if rule.limit is None:
            return rule.id_headers, "", 0.0
        take = self.store.take(match.bucket_key, rule.limit, min(cost, rule.limit.burst))
        state = f'"{rule.rule_id}";r={int(take.remaining)};t={math.ceil(take.reset_after)}'
        headers = (*rule.id_headers, ("RateLimit-Policy", rule.policy_header), ("RateLimit", state))
        return headers, ("" if take.allowed else "quota"), take.retry_after

    def _may_wait(self, match: Match, retry: float) -> bool:
        """Whether a request over quota is held for its token: its token comes within the rule's
        `maxWait`, fewer requests wait on the bucket than could be served in that time, and nothing
        is shadowed (shadow mode only counts)."""
        quota = match.rule.quota
        if quota is None or retry > quota.max_wait or match.rule.shadow or self.settings.shadow:
            return False
        return self._waiting.get(match.bucket_key, 0) < max(1.0, quota.rate * quota.max_wait)

    async def _wait_for_tokens(self, match: Match, cost: float, client: str,
                               retry: float) -> tuple[Headers, str, float]:
        """Hold a request over quota until its bucket has its token (no seat is held meanwhile),
        or refuse it once its token would come after `maxWait` from its arrival."""
        assert match.rule.quota is not None
        key, started = match.bucket_key, self._clock()
        deadline = started + match.rule.quota.max_wait
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            while True:
                await self._sleep(retry)
                headers, reason, retry = self._quota(match, cost, client)
                if not reason:
                    self.stats.waited_for_tokens(match.rule.tenant, self._clock() - started)
                    return headers, reason, retry
                if self._clock() + retry > deadline:
                    return headers, reason, retry
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    def _isolated(self, rule: CompiledRule, cost: float, client: str) -> tuple[Headers, str, float]:
        """A quarantined client's own bucket, shared by all its rules (fleet-wide on Redis)."""
        limit = isolation_limit(self.quarantines.get(rule.tenant))
        if limit is None:
            return rule.id_headers, "quarantined", float(MAX_RETRY_AFTER)
        take = self.store.take(f"{{{rule.tenant}}}:_quarantine:u:{client}", limit, min(cost, limit.burst))
        return rule.id_headers, ("" if take.allowed else "quarantined"), take.retry_after

    def _cap(self, match: Match, info: RequestInfo) -> tuple[str, str]:
        """Acquire the rule's watch or in-flight cap: (key held or "", reason refused or "")."""
        rule = match.rule
        watch = info.verb == "watch"
        cap = rule.max_watches if watch else rule.max_inflight
        if cap is None:
            return "", ""
        key = f"{match.bucket_key}{rule.cap_tag}#{'watches' if watch else 'inflight'}"
        if self._caps.try_acquire(key, cap):
            return key, ""
        return "", "watches" if watch else "inflight"

    async def _queue(self, match: Match, level: FairQueue, held: _Held, headers: Headers,
                     client: str, cluster: str) -> Ticket:
        granted = asyncio.get_running_loop().create_future()
        waiter = level.enqueue(match.flow, held.width, lambda: _wake(granted))
        if waiter is None:
            held.release()
            return self._refuse(match, "queue-full", 1.0, headers, client, cluster)
        started = self._clock()
        try:
            async with asyncio.timeout(level.level.max_queue_wait):
                await granted
        except TimeoutError:
            if level.cancel(waiter):
                held.release()
                return self._refuse(match, "queue-wait", 1.0, headers, client, cluster)
        except asyncio.CancelledError:
            if not level.cancel(waiter):
                level.release(held.width)  # granted as the client went away: give the seat back
            held.release()
            raise
        held.level = level
        self.stats.waited(level.level.name, self._clock() - started)
        return self._verdict(match.rule, "queued", headers, held, match.flow)

    def _refuse(self, match: Match, reason: str, retry: float, headers: Headers, client: str,
                cluster: str) -> Ticket:
        rule = match.rule
        self.stats.reasons[(cluster, rule.tenant, reason)] += 1
        if rule.shadow or self.settings.shadow:
            return self._verdict(rule, "shadow", headers, _Held(None, "", None, 0), reason=reason)
        policy = self.quarantines.get(rule.tenant)
        if policy is not None and self.isolation is not None and reason != "quarantined":
            self.isolation.report_rejection(client, policy, tenant=rule.tenant)
        streak = self._streaks.get(match.flow, 0) + 1
        if len(self._streaks) >= _STREAKS_KEPT:
            self._streaks.clear()
        self._streaks[match.flow] = streak
        # Like APF, a flow that keeps knocking is told to wait longer: x2 every _STREAK_STEP refusals.
        seconds = max(1, math.ceil(retry)) * 2 ** min(streak // _STREAK_STEP, 6)
        verdict = Verdict(
            "rejected", rule.tenant, rule.name, min(MAX_RETRY_AFTER, seconds), MESSAGES[reason], headers
        )
        return Ticket(verdict)

    def _verdict(
        self,
        rule: CompiledRule,
        outcome: Outcome,
        headers: Headers,
        held: _Held,
        flow: str = "",
        *,
        reason: str = "",
    ) -> Ticket:
        if flow and self._streaks:
            self._streaks.pop(flow, None)
        return Ticket(Verdict(outcome, rule.tenant, rule.name, 0, reason, headers), held.release)

    def seats_in_use(self) -> dict[str, int]:
        return {name: level.seats_in_use for name, level in self._levels.items()}

    def snapshot_buckets(self) -> list[dict[str, object]]:
        """What the store holds of each bucket."""
        return self.store.snapshot()

    def snapshot_queues(self) -> list[dict[str, object]]:
        """Every priority level's seats and busy queues, then the held caps."""
        levels = [level.snapshot() for level in self._levels.values()]
        return [*levels, {"caps": self._caps.snapshot()}]
