"""The table of kinds the simulated api-server serves: the built-in resources of Kubernetes 1.32.

Each entry says where the kind lives (group, version, plural), whether it is namespaced, its short
names, categories, subresources and verbs. Which fields an object may hold comes from the protobuf
schema (`chaos.sim.schema`), not from here. Custom resources of stored CRDs are `Kind`s too, made
by `chaos.sim.crds`. It must never hold objects or behaviour; the store and the handlers read it.
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
    verbs: tuple[str, ...] = CRUD
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    stored: bool = True
    """False for the review kinds and bindings, which are answered and never stored."""
    custom: bool = False
    """A custom resource of a stored CRD (JSON only, no built-in schema)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.resource)

    @property
    def has_status(self) -> bool:
        """Whether writes to the main resource ignore status (status has its own subresource)."""
        return "status" in self.subresources


def _k(
    gv: str, resource: str, kind: str, namespaced: bool = True, short: str = "", subs: str = "", **kw: object
) -> Kind:
    group, _, version = gv.rpartition("/")
    return Kind(
        group, version, resource, kind, namespaced,
        subresources=tuple(subs.split()), short_names=tuple(short.split()), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


_ALL = {"categories": ("all",)}
_EXT = {"categories": ("api-extensions",)}
_REVIEW = {"verbs": CREATE_ONLY, "stored": False}
_NO_COLLECTION = ("create", "delete", "get", "list", "patch", "update", "watch")
_POD_SUBS = "attach binding ephemeralcontainers eviction exec log portforward proxy status"
_RBAC = "rbac.authorization.k8s.io/v1"
_ADM = "admissionregistration.k8s.io/v1"
_STORAGE = "storage.k8s.io/v1"
_FLOW = "flowcontrol.apiserver.k8s.io/v1"

KINDS: tuple[Kind, ...] = (
    _k("v1", "bindings", "Binding", **_REVIEW),
    _k("v1", "componentstatuses", "ComponentStatus", False, "cs", verbs=("get", "list")),
    _k("v1", "configmaps", "ConfigMap", short="cm"),
    _k("v1", "endpoints", "Endpoints", short="ep"),
    _k("v1", "events", "Event", short="ev"),
    _k("v1", "limitranges", "LimitRange", short="limits"),
    _k("v1", "namespaces", "Namespace", False, "ns", "finalize status", verbs=_NO_COLLECTION),
    _k("v1", "nodes", "Node", False, "no", "proxy status"),
    _k("v1", "persistentvolumeclaims", "PersistentVolumeClaim", short="pvc", subs="status"),
    _k("v1", "persistentvolumes", "PersistentVolume", False, "pv", "status"),
    _k("v1", "pods", "Pod", short="po", subs=_POD_SUBS, **_ALL),
    _k("v1", "podtemplates", "PodTemplate"),
    _k("v1", "replicationcontrollers", "ReplicationController", short="rc", subs="scale status", **_ALL),
    _k("v1", "resourcequotas", "ResourceQuota", short="quota", subs="status"),
    _k("v1", "secrets", "Secret"),
    _k("v1", "serviceaccounts", "ServiceAccount", short="sa", subs="token"),
    _k("v1", "services", "Service", short="svc", subs="proxy status", **_ALL),
    _k(_ADM, "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False, **_EXT),
    _k(_ADM, "validatingadmissionpolicies", "ValidatingAdmissionPolicy", False, subs="status", **_EXT),
    _k(_ADM, "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False, **_EXT),
    _k(_ADM, "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False, **_EXT),
    _k(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "crd crds",
        "status",
        **_EXT,
    ),
    _k("apiregistration.k8s.io/v1", "apiservices", "APIService", False, subs="status", **_EXT),
    _k("apps/v1", "controllerrevisions", "ControllerRevision"),
    _k("apps/v1", "daemonsets", "DaemonSet", short="ds", subs="status", **_ALL),
    _k("apps/v1", "deployments", "Deployment", short="deploy", subs="scale status", **_ALL),
    _k("apps/v1", "replicasets", "ReplicaSet", short="rs", subs="scale status", **_ALL),
    _k("apps/v1", "statefulsets", "StatefulSet", short="sts", subs="scale status", **_ALL),
    _k("authentication.k8s.io/v1", "selfsubjectreviews", "SelfSubjectReview", False, **_REVIEW),
    _k("authentication.k8s.io/v1", "tokenreviews", "TokenReview", False, **_REVIEW),
    _k("authorization.k8s.io/v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", **_REVIEW),
    _k("authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, **_REVIEW),
    _k("authorization.k8s.io/v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, **_REVIEW),
    _k("authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", False, **_REVIEW),
    _k(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short="hpa",
        subs="status",
        **_ALL,
    ),
    _k(
        "autoscaling/v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short="hpa",
        subs="status",
        **_ALL,
    ),
    _k("batch/v1", "cronjobs", "CronJob", short="cj", subs="status", **_ALL),
    _k("batch/v1", "jobs", "Job", subs="status", **_ALL),
    _k(
        "certificates.k8s.io/v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        "csr",
        "approval status",
    ),
    _k("coordination.k8s.io/v1", "leases", "Lease"),
    _k("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    _k("events.k8s.io/v1", "events", "Event", short="ev"),
    _k(_FLOW, "flowschemas", "FlowSchema", False, subs="status"),
    _k(_FLOW, "prioritylevelconfigurations", "PriorityLevelConfiguration", False, subs="status"),
    _k("networking.k8s.io/v1", "ingressclasses", "IngressClass", False),
    _k("networking.k8s.io/v1", "ingresses", "Ingress", short="ing", subs="status"),
    _k("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", short="netpol"),
    _k("node.k8s.io/v1", "runtimeclasses", "RuntimeClass", False),
    _k("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", short="pdb", subs="status"),
    _k(_RBAC, "clusterrolebindings", "ClusterRoleBinding", False),
    _k(_RBAC, "clusterroles", "ClusterRole", False),
    _k(_RBAC, "rolebindings", "RoleBinding"),
    _k(_RBAC, "roles", "Role"),
    _k("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", False, "pc"),
    _k(_STORAGE, "csidrivers", "CSIDriver", False),
    _k(_STORAGE, "csinodes", "CSINode", False),
    _k(_STORAGE, "csistoragecapacities", "CSIStorageCapacity"),
    _k(_STORAGE, "storageclasses", "StorageClass", False, "sc"),
    _k(_STORAGE, "volumeattachments", "VolumeAttachment", False, subs="status"),
)


@dataclass(frozen=True)
class KindTable:
    kinds: tuple[Kind, ...] = KINDS
    _by_path: dict[tuple[str, str, str], Kind] = field(default_factory=dict, compare=False)
    _by_kind: dict[tuple[str, str], Kind] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for kind in self.kinds:
            self._by_path[(kind.group, kind.version, kind.resource)] = kind
            self._by_kind.setdefault((kind.api_version, kind.kind), kind)

    def lookup(self, group: str, version: str, resource: str) -> Kind | None:
        return self._by_path.get((group, version, resource))

    def by_kind(self, api_version: str, kind_name: str) -> Kind | None:
        return self._by_kind.get((api_version, kind_name))

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first, core group as ""; in table order."""
        out: dict[str, list[str]] = {}
        for kind in self.kinds:
            versions = out.setdefault(kind.group, [])
            if kind.version not in versions:
                versions.append(kind.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Kind]:
        return [k for k in self.kinds if k.group == group and k.version == version]

    def stored_keys(self) -> list[Kind]:
        """One kind per stored (group, resource): the one a namespace's deletion sweeps."""
        seen: dict[tuple[str, str], Kind] = {}
        for kind in self.kinds:
            if kind.stored:
                seen.setdefault(kind.key, kind)
        return list(seen.values())


TABLE = KindTable()
