"""The tenant policy as values: who a tenant is, which requests each of its rules covers, and
what each rule allows.

Pure: frozen dataclasses (rates and durations are parsed by `guard.config.durations`).
No YAML, no file I/O; reading and validating files is
`guard.policy.loading` and `guard.policy.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

API_VERSION = "guard.io/v1alpha1"
KIND = "TenantPolicy"

SubjectKind = Literal["User", "Group", "ServiceAccount"]
Scope = Literal["tenant", "user", "namespace"]
FailMode = Literal["local", "open", "closed"]
"""What a quota does while Redis is unreachable: a local share, admit all, or refuse all."""

LabelOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
LABEL_OPERATORS: tuple[LabelOperator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")
OVERRIDE_FIELDS = ("quota", "maxInflight", "maxWatches", "priorityLevel", "shadow")
"""What an override may change in a rule on the clusters it names."""

SUBJECT_KINDS: tuple[SubjectKind, ...] = ("User", "Group", "ServiceAccount")
SCOPES: tuple[Scope, ...] = ("tenant", "user", "namespace")
FAIL_MODES: tuple[FailMode, ...] = ("local", "open", "closed")
RESOURCE_VERBS = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "connect",
    "proxy",
)
# Non-resource requests carry the lower-cased HTTP method as their verb.
HTTP_VERBS = ("get", "head", "options", "post", "put", "patch", "delete")

@dataclass(frozen=True)
class LabelRequirement:
    """One `matchExpressions` entry, as Kubernetes' label selectors have it."""

    key: str
    operator: LabelOperator
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Which clusters something applies to: those named in `clusters`, and those whose labels
    (from guard.yaml) the selector matches. None: not given (an empty selector matches every
    cluster, as in Kubernetes)."""

    clusters: tuple[str, ...] | None = None
    match_labels: tuple[tuple[str, str], ...] | None = None
    match_expressions: tuple[LabelRequirement, ...] | None = None

    @property
    def has_selector(self) -> bool:
        return self.match_labels is not None or self.match_expressions is not None


@dataclass(frozen=True)
class Override:
    """Fields of rules changed on the clusters `placement` selects; `rules` empty: every rule.
    None: the field is left as the rule has it."""

    placement: Placement
    rules: tuple[str, ...] = ()
    quota: Quota | None = None
    max_inflight: int | None = None
    max_watches: int | None = None
    priority_level: str | None = None
    shadow: bool | None = None


@dataclass(frozen=True)
class Subject:
    """A member of a tenant. `name` (and a service account's `namespace`) may be `*` or end in `*`."""

    kind: SubjectKind
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class Selector:
    """Which requests a rule covers. None means "any"; entries may be `*`.

    resources follow RBAC: `pods` (not its subresources), `pods/log`, `pods/*`, `*/scale`, `*`.
    namespaces: `*` is any namespace and cluster-scoped requests, `""` is cluster-scoped only,
    `team-*` a prefix. nonResourceURLs: exact paths or a prefix ending in `*`.
    A selector naming resource fields (apiGroups, resources, resourceNames, namespaces) covers
    only resource requests, one naming nonResourceURLs only non-resource requests, one naming
    neither covers both.
    """

    verbs: tuple[str, ...] | None = None
    api_groups: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    resource_names: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    non_resource_urls: tuple[str, ...] | None = None
    clusters: tuple[str, ...] | None = None


DEFAULT_MAX_WAIT = 1.0
"""Seconds a request over quota may wait for its token before 429 (`quota.maxWait`)."""


@dataclass(frozen=True)
class Quota:
    """A token bucket: `rate` tokens per second, `burst` banked, one bucket per `scope`."""

    rate: float
    burst: float
    scope: Scope = "tenant"
    fail_mode: FailMode = "local"
    max_wait: float = DEFAULT_MAX_WAIT
    """Seconds a request over quota is held for its token before it is refused: a brief burst is
    smoothed, as nginx's `limit_req ... burst` and APF's queues do, so clients that never retry a
    429 (lightkube, kr8s, the JavaScript client) do not fail on it. 0: refuse at once."""


@dataclass(frozen=True)
class ListCost:
    """What a LIST costs: `base` + objects / `per_objects`, at most `max`.

    objects is what the api-server's APF list work estimator counts for the request, from the
    object count guard learnt for the resource (`guard.admission.cost`). A watch with an initial
    list costs that list, then holds a watch seat.
    """

    base: float = 1.0
    per_objects: float = 100.0
    max: float = 10.0
    unmeasured: int = 1000
    """Objects assumed for a resource guard has not yet seen listed (with the defaults: `max`)."""


@dataclass(frozen=True)
class Rule:
    """One ordered rule of a tenant: a selector, an optional exclusion (`not:`), and limits."""

    name: str
    selector: Selector = Selector()
    exclude: Selector | None = None
    quota: Quota | None = None
    list_cost: ListCost = ListCost()
    max_inflight: int | None = None
    max_watches: int | None = None
    priority_level: str = ""  # "" = the admission settings' default level
    shadow: bool = False
    placement: Placement | None = None
    """The clusters this rule applies to (None: every cluster its tenant is placed on)."""
    quota_cluster: str = ""
    """Set by placement resolution when an override gave this cluster its own quota: the rule's
    bucket on that cluster is its own, not the one the fleet shares."""
    caps_cluster: str = ""
    """Likewise for an overridden maxInflight or maxWatches: that cluster's own in-flight counts."""


@dataclass(frozen=True)
class Quarantine:
    """Isolation of a tenant's runaway clients (enforced by `guard.federation.quarantine`)."""

    threshold: int
    window: float
    ttl: float
    rate: float | None = None
    burst: float | None = None


@dataclass(frozen=True)
class TenantPolicy:
    """One tenant: its subjects, the namespaces it owns (their service accounts are members),
    its rules in order, and its precedence among tenants (lower first; ties by file order)."""

    name: str
    subjects: tuple[Subject, ...]
    rules: tuple[Rule, ...]
    namespaces: tuple[str, ...] = ()
    precedence: int = 1000
    quarantine: Quarantine | None = None
    source: str = ""
    placement: Placement | None = None
    """The clusters this tenant's policy applies to (None: every cluster)."""
    overrides: tuple[Override, ...] = ()
    """Per-cluster changes to its rules, applied in order (a later one wins)."""
