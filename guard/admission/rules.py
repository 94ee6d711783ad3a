"""Match a request to the rule that governs it: `(Identity, RequestInfo, cluster) -> Match`.

First match by precedence: exempt rules, then tenants (by precedence, then file order) and their
rules in order, then the catch-all. Everything is compiled once per policy set: tenants are
indexed by user and group so a request only looks at the tenants it can belong to, and the
candidate list is cached per (user, groups). Pure: no I/O, no clock; never raises on a request.
It runs past 300 lines because compiling a policy set per cluster (placement, own buckets) and
matching against it share one index, kept beside the code that reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from guard.admission.config import AdmissionSettings
from guard.admission.store import Limit
from guard.kube.identity import SERVICE_ACCOUNT_PREFIX, Identity
from guard.kube.requestinfo import RequestInfo
from guard.policy.model import ListCost, Quota, Rule, Selector, Subject, TenantPolicy
from guard.policy.placement import Labels, effective_set, uses_placement

EXEMPT_TENANT = "_exempt"
CATCH_ALL_TENANT = "_catch-all"
_CACHE_SIZE = 4096


PROCESS_SECRET = os.urandom(32)
"""Keys the ids when the settings give no `admission.idSecret`: stable for the process's life,
different in every process (replicas then disagree on ids; docs/running.md)."""


def opaque_id(*names: str, secret: bytes = PROCESS_SECRET) -> str:
    """A short stable id that names a tenant or rule in headers without revealing it: an HMAC of the
    names under a secret, so a list of likely names cannot be hashed and matched against it."""
    return hmac.new(secret, "/".join(names).encode(), hashlib.sha256).hexdigest()[:12]


class Pattern:
    """Entries that are exact strings, `*` (anything) or a prefix ending in `*`."""

    __slots__ = ("any", "exact", "prefixes")

    def __init__(self, entries: Iterable[str]) -> None:
        entries = tuple(entries)
        self.any = "*" in entries
        self.exact = frozenset(e for e in entries if not e.endswith("*"))
        self.prefixes = tuple(e[:-1] for e in entries if e.endswith("*") and e != "*")

    def __call__(self, value: str) -> bool:
        return self.any or value in self.exact or (bool(self.prefixes) and value.startswith(self.prefixes))


def _pattern(entries: tuple[str, ...] | None) -> Pattern | None:
    return None if entries is None else Pattern(entries)


class CompiledSelector:
    """A `Selector` ready for the hot path: sets and prefix tuples; None means any."""

    __slots__ = ("clusters", "groups", "names", "namespaces", "resources", "urls", "verbs", "want")

    def __init__(self, sel: Selector) -> None:
        self.verbs = None if sel.verbs is None or "*" in sel.verbs else frozenset(sel.verbs)
        self.groups = None if sel.api_groups is None or "*" in sel.api_groups else frozenset(sel.api_groups)
        self.resources = None if sel.resources is None or "*" in sel.resources else frozenset(sel.resources)
        self.names = None if sel.resource_names is None else frozenset(sel.resource_names)
        self.namespaces = _pattern(sel.namespaces)
        self.urls = _pattern(sel.non_resource_urls)
        self.clusters = _pattern(sel.clusters)
        resource_fields = (sel.api_groups, sel.resources, sel.resource_names, sel.namespaces)
        # Which kind of request the selector can cover: True resource, False non-resource, None both.
        self.want = (
            False
            if sel.non_resource_urls is not None
            else (True if any(f is not None for f in resource_fields) else None)
        )

    def covers(self, info: RequestInfo, cluster: str) -> bool:
        if self.verbs is not None and info.verb not in self.verbs:
            return False
        if self.clusters is not None and not self.clusters(cluster):
            return False
        if self.want is not None and self.want != info.is_resource_request:
            return False
        if not info.is_resource_request:
            return self.urls is None or self.urls(info.path)
        if self.groups is not None and info.api_group not in self.groups:
            return False
        if self.resources is not None and not self._resource(info):
            return False
        if self.names is not None and info.name not in self.names:
            return False
        return self.namespaces is None or self.namespaces(info.namespace)

    def _resource(self, info: RequestInfo) -> bool:
        assert self.resources is not None
        if not info.subresource:
            return info.resource in self.resources
        res = self.resources
        return (
            f"{info.resource}/{info.subresource}" in res
            or f"{info.resource}/*" in res
            or f"*/{info.subresource}" in res
        )


class CompiledRule:
    """A rule with its ids, bucket limit, level and headers worked out once."""

    def __init__(self, tenant: str, rule: Rule, *, level: str, exempt: bool = False,
                 secret: bytes = PROCESS_SECRET) -> None:
        self.tenant, self.name, self.exempt = tenant, rule.name, exempt
        self.tenant_id = opaque_id(tenant, secret=secret)
        self.rule_id = opaque_id(tenant, rule.name, secret=secret)
        self.quota: Quota | None = rule.quota
        self.limit = Limit(rule.quota.rate, rule.quota.burst, rule.quota.fail_mode) if rule.quota else None
        self.list_cost: ListCost = rule.list_cost
        self.max_inflight, self.max_watches = rule.max_inflight, rule.max_watches
        self.level, self.shadow = level, rule.shadow
        # hash tag: a tenant's keys share a slot; an override's own quota on a cluster, its own bucket
        own = f"@{rule.quota_cluster}" if rule.quota_cluster else ""
        self.key_base = f"{{{tenant}}}:{rule.name}{own}"
        self.cap_tag = f"@{rule.caps_cluster}" if rule.caps_cluster and not rule.quota_cluster else ""
        """Appended to the bucket key for in-flight and watch counts an override made the cluster's own."""
        self._selector = CompiledSelector(rule.selector)
        self._exclude = CompiledSelector(rule.exclude) if rule.exclude is not None else None
        self.id_headers = (("X-Guard-Tenant-Id", self.tenant_id), ("X-Guard-Rule-Id", self.rule_id))
        self.policy_header = ""
        if rule.quota is not None:
            window = max(1, round(rule.quota.burst / rule.quota.rate))
            self.policy_header = f'"{self.rule_id}";q={int(rule.quota.burst)};w={window}'

    def covers(self, info: RequestInfo, cluster: str) -> bool:
        if not self._selector.covers(info, cluster):
            return False
        return self._exclude is None or not self._exclude.covers(info, cluster)

    def bucket_key(self, identity: Identity, info: RequestInfo) -> str:
        scope = self.quota.scope if self.quota is not None else "tenant"
        if scope == "user":
            return f"{self.key_base}:u:{identity.user}"
        if scope == "namespace":
            return f"{self.key_base}:ns:{info.namespace}"
        return self.key_base


class Match(NamedTuple):
    """Which rule governs a request, and the bucket and fair-queue flow it is charged to (an
    immutable NamedTuple: one is built per request)."""

    rule: CompiledRule
    bucket_key: str
    flow: str

    @property
    def tenant(self) -> str:
        return self.rule.tenant

    @property
    def exempt(self) -> bool:
        return self.rule.exempt

    @property
    def priority_level(self) -> str:
        return self.rule.level


class _Members:
    """Who belongs to a tenant: exact users and groups are indexed; patterns are tested."""

    def __init__(self, subjects: Iterable[Subject], owned_namespaces: Iterable[str]) -> None:
        self.users: set[str] = set()
        self.groups: set[str] = set()
        self.patterns: list[tuple[str, Pattern, Pattern]] = []  # (kind, name, namespace)
        for s in subjects:
            wild = s.name.endswith("*") or s.namespace.endswith("*")
            if s.kind == "ServiceAccount" and not wild:
                self.users.add(f"{SERVICE_ACCOUNT_PREFIX}{s.namespace}:{s.name}")
            elif not wild:
                (self.users if s.kind == "User" else self.groups).add(s.name)
            else:
                self.patterns.append((s.kind, Pattern([s.name]), Pattern([s.namespace])))
        for namespace in owned_namespaces:
            self.patterns.append(("ServiceAccount", Pattern(["*"]), Pattern([namespace])))

    def by_pattern(self, identity: Identity) -> bool:
        account = identity.service_account
        return any(_claims(kind, name, ns, identity, account) for kind, name, ns in self.patterns)


def _claims(
    kind: str, name: Pattern, namespace: Pattern, identity: Identity, account: tuple[str, str] | None
) -> bool:
    if kind == "User":
        return name(identity.user)
    if kind == "Group":
        return any(name(g) for g in identity.groups)
    return account is not None and namespace(account[0]) and name(account[1])


class _Tenant:
    def __init__(self, name: str, members: _Members, rules: tuple[CompiledRule, ...]) -> None:
        self.name, self.members, self.rules = name, members, rules


class PolicySet:
    """A compiled, immutable set of exempt rules, tenants and the catch-all. Swap it whole."""

    def __init__(self, tenants: list[_Tenant], catch_all: CompiledRule) -> None:
        self.tenants = tuple(tenants)
        self.catch_all = catch_all
        self.names = tuple(t.name for t in tenants if t.name != EXEMPT_TENANT)
        self._by_user: dict[str, list[int]] = {}
        self._by_group: dict[str, list[int]] = {}
        self._patterned = [i for i, t in enumerate(tenants) if t.members.patterns]
        for i, tenant in enumerate(tenants):
            for user in tenant.members.users:
                self._by_user.setdefault(user, []).append(i)
            for group in tenant.members.groups:
                self._by_group.setdefault(group, []).append(i)
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[_Tenant, ...]] = {}
        self._placed: dict[str, PolicySet] | None = None
        self._place: Callable[[str], PolicySet] | None = None

    def place(self, placed: dict[str, PolicySet], unknown: Callable[[str], PolicySet]) -> None:
        """Serve each cluster from its own resolved set (`guard.policy.placement`); a cluster not in
        `placed` gets `unknown(cluster)` on its first request. This set's own tenants stay the
        fleet-wide template the debug pages and metrics show."""
        self._placed, self._place = placed, unknown

    @property
    def placed(self) -> dict[str, PolicySet]:
        """Each cluster's own resolved set so far (empty unless placement is in use)."""
        return dict(self._placed or {})

    def for_cluster(self, cluster: str) -> PolicySet:
        """The set the cluster `cluster` enforces (this one unless placement is in use)."""
        if self._placed is None:
            return self
        found = self._placed.get(cluster)
        if found is None:
            assert self._place is not None
            found = self._placed[cluster] = self._place(cluster)
        return found

    def match(self, identity: Identity, info: RequestInfo, cluster: str) -> Match:
        if self._placed is not None:
            return self.for_cluster(cluster).match(identity, info, cluster)
        for tenant in self._candidates(identity):
            for rule in tenant.rules:
                if rule.covers(info, cluster):
                    return Match(rule, rule.bucket_key(identity, info), f"{tenant.name}/{identity.user}")
        rule = self.catch_all
        return Match(rule, rule.bucket_key(identity, info), f"{rule.tenant}/{identity.user}")

    def _candidates(self, identity: Identity) -> tuple[_Tenant, ...]:
        key = (identity.user, identity.groups)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            found = self._cache[key] = self._members_of(identity)
        return found

    def _members_of(self, identity: Identity) -> tuple[_Tenant, ...]:
        positions = set(self._by_user.get(identity.user, ()))
        for group in identity.groups:
            positions.update(self._by_group.get(group, ()))
        positions.update(i for i in self._patterned if self.tenants[i].members.by_pattern(identity))
        return tuple(self.tenants[i] for i in sorted(positions))


def compile_policies(
    policies: Iterable[TenantPolicy], settings: AdmissionSettings,
    clusters: Mapping[str, Labels] | None = None,
) -> tuple[PolicySet, list[str]]:
    """Exempt rules first, tenants by (precedence, given order), then the catch-all; and problems
    (unknown priority levels) that only the settings can reveal. With placement or overrides in
    use, each of `clusters` (name -> labels) is served from its own resolved set; sets that resolve
    alike are compiled once."""
    given = list(policies)
    base, problems = _compile(given, settings)
    problems += _override_levels(given, settings)
    if not uses_placement(given):
        return base, problems
    labels_of = dict(clusters or {})
    compiled: dict[tuple[TenantPolicy, ...], PolicySet] = {}

    def resolved(cluster: str) -> PolicySet:
        key = tuple(effective_set(given, cluster, labels_of.get(cluster, {})))
        if key not in compiled:
            compiled[key] = _compile(key, settings)[0]  # its levels were checked above
        return compiled[key]

    base.place({name: resolved(name) for name in labels_of}, resolved)
    return base, problems


def _override_levels(policies: Iterable[TenantPolicy], settings: AdmissionSettings) -> list[str]:
    known = {lvl.name for lvl in settings.priority_levels}
    return [f"{p.source or p.name}: spec.overrides[{i}].fields.priorityLevel: unknown priority level "
            f'"{o.priority_level}" (known: {", ".join(sorted(known))})'
            for p in policies for i, o in enumerate(p.overrides)
            if o.priority_level is not None and o.priority_level not in known]


def _compile(policies: Iterable[TenantPolicy], settings: AdmissionSettings) -> tuple[PolicySet, list[str]]:
    problems: list[str] = []
    known = {lvl.name for lvl in settings.priority_levels}
    secret = settings.id_secret.encode() if settings.id_secret else PROCESS_SECRET
    tenants = [
        _Tenant(
            EXEMPT_TENANT,
            _Members(e.subjects, ()),
            (CompiledRule(EXEMPT_TENANT, Rule(e.name, selector=e.selector, quota=e.quota,
                                              max_inflight=e.max_inflight), level="", exempt=True,
                          secret=secret),),
        )
        for e in settings.exempt
    ]
    for policy in sorted(policies, key=lambda p: p.precedence):
        rules = []
        for i, rule in enumerate(policy.rules):
            level = rule.priority_level or settings.default_priority_level
            if level not in known:
                problems.append(
                    f"{policy.source or policy.name}: spec.rules[{i}].priorityLevel: unknown "
                    f'priority level "{level}" (known: {", ".join(sorted(known))})'
                )
            rules.append(CompiledRule(policy.name, rule, level=level, secret=secret))
        tenants.append(_Tenant(policy.name, _Members(policy.subjects, policy.namespaces), tuple(rules)))
    fallback = settings.catch_all
    catch_all = CompiledRule(
        CATCH_ALL_TENANT,
        Rule("default", quota=fallback.quota, max_inflight=fallback.max_inflight),
        level=fallback.priority_level,
        secret=secret,
    )
    return PolicySet(tenants, catch_all), problems


_DEFAULT: list[PolicySet] = []


def default_rules() -> PolicySet:
    """The default exempt rules and catch-all alone (what is exempt when guard has no policies)."""
    if not _DEFAULT:
        _DEFAULT.append(compile_policies([], AdmissionSettings())[0])
    return _DEFAULT[0]
