"""The table of kinds the simulated api-server serves: adding a kind is one entry here.

Each entry says where the kind lives (group, version, plural), whether it is namespaced, which
subresources and verbs it has, and which top-level fields a strict decoder accepts. It must never
hold objects or behaviour; the store and the handlers read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    fields: frozenset[str] = frozenset({"spec", "status"})
    """Top-level fields besides apiVersion/kind/metadata; unknown ones fail fieldValidation=Strict."""
    verbs: tuple[str, ...] = CRUD
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    """Whether writes to the main resource ignore status (status has its own subresource)."""
    stored: bool = True
    """False for the review kinds, which are answered and never stored."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.resource)


def _k(group: str, version: str, resource: str, kind: str, namespaced: bool = True, **kw: object) -> Kind:
    return Kind(group, version, resource, kind, namespaced, **kw)  # type: ignore[arg-type]


_RBAC = "rbac.authorization.k8s.io"
_REVIEW = {"verbs": CREATE_ONLY, "stored": False}

KINDS: tuple[Kind, ...] = (
    _k(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        subresources=("status",),
        has_status=True,
    ),
    _k(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        has_status=True,
        subresources=("status", "log", "exec"),
    ),
    _k(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        short_names=("cm",),
        fields=frozenset({"data", "binaryData", "immutable"}),
    ),
    _k("", "v1", "secrets", "Secret", fields=frozenset({"data", "stringData", "type", "immutable"})),
    _k(
        "",
        "v1",
        "services",
        "Service",
        short_names=("svc",),
        categories=("all",),
        has_status=True,
        subresources=("status",),
    ),
    _k(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        short_names=("sa",),
        subresources=("token",),
        fields=frozenset({"secrets", "imagePullSecrets", "automountServiceAccountToken"}),
    ),
    _k(
        "",
        "v1",
        "events",
        "Event",
        short_names=("ev",),
        fields=frozenset(
            {
                "action",
                "count",
                "eventTime",
                "firstTimestamp",
                "involvedObject",
                "lastTimestamp",
                "message",
                "reason",
                "related",
                "reportingComponent",
                "reportingInstance",
                "series",
                "source",
                "type",
            }
        ),
    ),
    _k(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        short_names=("ev",),
        fields=frozenset(
            {
                "action",
                "deprecatedCount",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
                "deprecatedSource",
                "eventTime",
                "note",
                "reason",
                "regarding",
                "related",
                "reportingController",
                "reportingInstance",
                "series",
                "type",
            }
        ),
    ),
    _k(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        has_status=True,
        subresources=("status", "scale"),
    ),
    _k("coordination.k8s.io", "v1", "leases", "Lease", fields=frozenset({"spec"})),
    _k(_RBAC, "v1", "roles", "Role", fields=frozenset({"rules"})),
    _k(_RBAC, "v1", "rolebindings", "RoleBinding", fields=frozenset({"subjects", "roleRef"})),
    _k(_RBAC, "v1", "clusterroles", "ClusterRole", False, fields=frozenset({"rules", "aggregationRule"})),
    _k(
        _RBAC,
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        fields=frozenset({"subjects", "roleRef"}),
    ),
    _k("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, **_REVIEW),
    _k("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, **_REVIEW),
    _k("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, **_REVIEW),
    _k("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, **_REVIEW),
    _k(
        "authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True, **_REVIEW
    ),
)


@dataclass(frozen=True)
class KindTable:
    kinds: tuple[Kind, ...] = KINDS
    _by_path: dict[tuple[str, str, str], Kind] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for kind in self.kinds:
            self._by_path[(kind.group, kind.version, kind.resource)] = kind

    def lookup(self, group: str, version: str, resource: str) -> Kind | None:
        return self._by_path.get((group, version, resource))

    def by_kind(self, api_version: str, kind_name: str) -> Kind | None:
        for kind in self.kinds:
            if kind.api_version == api_version and kind.kind == kind_name:
                return kind
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, core group as ""; in table order."""
        out: dict[str, list[str]] = {}
        for kind in self.kinds:
            versions = out.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Kind]:
        return [k for k in self.kinds if k.group == group and k.version == version]


TABLE = KindTable()
