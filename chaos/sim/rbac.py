"""RBAC evaluation from the stored Role, ClusterRole, RoleBinding and ClusterRoleBinding objects.

Answers "may this user do this" with the api-server's rule semantics (verbs, apiGroups, resources
with `resource/subresource`, resourceNames, nonResourceURLs with trailing `*`) and its reasons and
forbidden messages. It must never cache: the store is the truth, so a new binding takes effect at
once, as it does on a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chaos.sim.authn import SA_PREFIX, User
from chaos.sim.kinds import TABLE
from chaos.sim.store import Store

_ROLE = TABLE.lookup("rbac.authorization.k8s.io", "v1", "roles")
_CLUSTER_ROLE = TABLE.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
_BINDING = TABLE.lookup("rbac.authorization.k8s.io", "v1", "rolebindings")
_CLUSTER_BINDING = TABLE.lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")


@dataclass(frozen=True)
class Attributes:
    user: User
    verb: str
    resource_request: bool = True
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    def forbidden_message(self) -> str:
        who = f'User "{self.user.name}"'
        if not self.resource_request:
            return f'forbidden: {who} cannot {self.verb} path "{self.path}"'
        full = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        subject = f'{full} "{self.name}"' if self.name else full
        if self.verb == "impersonate":
            subject = f'{self.resource} "{self.name}"'
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return (
            f'{subject} is forbidden: {who} cannot {self.verb} resource "{full}" '
            f'in API group "{self.group}" {scope}'
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _has(values: Iterable[str], wanted: str) -> bool:
    values = list(values or ())
    return "*" in values or wanted in values


def _resource_matches(rule_resources: list[str], resource: str, subresource: str) -> bool:
    full = f"{resource}/{subresource}" if subresource else resource
    for item in rule_resources or ():
        if item in ("*", full) or (subresource and item in (f"{resource}/*", f"*/{subresource}")):
            return True
    return False


def _url_matches(patterns: list[str], path: str) -> bool:
    for pattern in patterns or ():
        if pattern == path or pattern == "*" or (pattern.endswith("*") and path.startswith(pattern[:-1])):
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    if not _has(rule.get("verbs") or (), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs") or [], attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups") or (), attrs.group)
        and _resource_matches(rule.get("resources") or [], attrs.resource, attrs.subresource)
        and (not names or attrs.name in names)
    )


def subject_matches(subject: dict[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SA_PREFIX}{namespace}:{name}"
    return False


class Authorizer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind = _CLUSTER_ROLE if ref.get("kind") == "ClusterRole" else _ROLE
        assert kind is not None
        role = self.store.find(kind, "" if kind is _CLUSTER_ROLE else namespace, ref.get("name", ""))
        return list((role or {}).get("rules") or [])

    def _bindings(self, namespace: str) -> Iterable[tuple[str, dict[str, Any]]]:
        assert _CLUSTER_BINDING is not None and _BINDING is not None
        for _, obj in self.store.items(_CLUSTER_BINDING):
            yield "", obj
        if namespace:
            for _, obj in self.store.items(_BINDING, namespace):
                yield namespace, obj

    def authorize(self, attrs: Attributes) -> Decision:
        for namespace, binding in self._bindings(attrs.namespace):
            subjects = binding.get("subjects") or []
            subject = next((s for s in subjects if subject_matches(s, attrs.user, namespace)), None)
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            if any(rule_allows(rule, attrs) for rule in self._rules(ref, namespace)):
                return Decision(True, _reason(binding, namespace, ref, subject))
        return Decision(False, "")


def _reason(binding: dict[str, Any], namespace: str, ref: dict[str, Any], subject: dict[str, Any]) -> str:
    name = binding["metadata"]["name"]
    which = f'RoleBinding "{name}/{namespace}"' if namespace else f'ClusterRoleBinding "{name}"'
    return (
        f'RBAC: allowed by {which} of {ref.get("kind")} "{ref.get("name")}" '
        f'to {subject.get("kind")} "{subject.get("name")}"'
    )
