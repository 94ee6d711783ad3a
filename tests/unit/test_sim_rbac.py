"""RBAC decisions from stored roles and bindings: verbs, groups, subresources, names, URLs, scopes."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.sim.authn import User
from chaos.sim.bootstrap import load_objects, populate
from chaos.sim.rbac import Attributes, Authorizer
from chaos.sim.store import Store

RBAC = "rbac.authorization.k8s.io/v1"
REF = {"apiGroup": "rbac.authorization.k8s.io"}


def role(kind: str, name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def binding(
    kind: str, name: str, namespace: str, ref_kind: str, ref: str, subjects: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {**REF, "kind": ref_kind, "name": ref},
        "subjects": subjects,
    }


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    store = Store()
    populate(store, bootstrap=[], seed_objects=0, seed_bytes=0)
    load_objects(
        store,
        [
            role(
                "Role",
                "pod-reader",
                "team-a",
                [
                    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": ["settings"],
                        "verbs": ["get"],
                    },
                ],
            ),
            binding(
                "RoleBinding",
                "readers",
                "team-a",
                "Role",
                "pod-reader",
                [{"kind": "Group", "name": "team-a"}],
            ),
            role(
                "ClusterRole",
                "deployer",
                "",
                [
                    {
                        "apiGroups": ["apps"],
                        "resources": ["deployments", "deployments/scale"],
                        "verbs": ["*"],
                    },
                    {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
                ],
            ),
            binding(
                "ClusterRoleBinding",
                "bob-deploys",
                "",
                "ClusterRole",
                "deployer",
                [{"kind": "User", "name": "bob"}],
            ),
            binding(
                "RoleBinding",
                "sa-deploys",
                "team-a",
                "ClusterRole",
                "deployer",
                [{"kind": "ServiceAccount", "name": "ci", "namespace": "team-a"}],
            ),
            role(
                "ClusterRole",
                "impersonator",
                "",
                [
                    {
                        "apiGroups": [""],
                        "resources": ["users"],
                        "resourceNames": ["alice"],
                        "verbs": ["impersonate"],
                    }
                ],
            ),
            binding(
                "ClusterRoleBinding",
                "carol-impersonates",
                "",
                "ClusterRole",
                "impersonator",
                [{"kind": "User", "name": "carol"}],
            ),
        ],
    )
    return Authorizer(store)


ADMIN = User("admin", groups=("system:masters", "system:authenticated"))
ALICE = User("alice", groups=("team-a", "system:authenticated"))
BOB = User("bob", groups=("system:authenticated",))
CI = User("system:serviceaccount:team-a:ci", groups=("system:serviceaccounts", "system:authenticated"))
CAROL = User("carol", groups=("system:authenticated",))
MALLORY = User("mallory", groups=("system:authenticated",))


def res(
    user: User,
    verb: str,
    resource: str,
    namespace: str = "",
    *,
    group: str = "",
    sub: str = "",
    name: str = "",
) -> Attributes:
    return Attributes(user, verb, True, group, resource, sub, namespace, name)


def url(user: User, verb: str, path: str) -> Attributes:
    return Attributes(user, verb, False, path=path)


@pytest.mark.parametrize(
    ("attrs", "allowed"),
    [
        (res(ADMIN, "delete", "nodes"), True),
        (url(ADMIN, "post", "/anything"), True),
        (res(ALICE, "list", "pods", "team-a"), True),
        (res(ALICE, "list", "pods", "team-b"), False),
        (res(ALICE, "list", "pods"), False),  # a RoleBinding never grants cluster-wide
        (res(ALICE, "delete", "pods", "team-a", name="p"), False),
        (res(ALICE, "get", "pods", "team-a", sub="log", name="p"), True),
        (res(ALICE, "create", "pods", "team-a", sub="exec", name="p"), False),
        (res(ALICE, "get", "configmaps", "team-a", name="settings"), True),
        (res(ALICE, "get", "configmaps", "team-a", name="other"), False),
        (res(ALICE, "list", "configmaps", "team-a"), False),  # resourceNames never allow list
        (res(BOB, "patch", "deployments", "any", group="apps", sub="scale", name="web"), True),
        (res(BOB, "patch", "deployments", "any", group="", name="web"), False),  # wrong API group
        (res(BOB, "patch", "deployments", "any", group="apps", sub="status", name="web"), False),
        (url(BOB, "get", "/metrics"), True),
        (url(BOB, "get", "/logs/kube-apiserver.log"), True),
        (url(BOB, "post", "/metrics"), False),
        (url(MALLORY, "get", "/apis"), True),  # system:discovery for every authenticated user
        (url(MALLORY, "get", "/metrics"), False),
        (res(MALLORY, "create", "selfsubjectaccessreviews", group="authorization.k8s.io"), True),
        (res(MALLORY, "get", "pods", "default", name="x"), False),
        (res(CI, "update", "deployments", "team-a", group="apps", name="web"), True),
        (res(CI, "update", "deployments", "team-b", group="apps", name="web"), False),
        (res(CAROL, "impersonate", "users", name="alice"), True),
        (res(CAROL, "impersonate", "users", name="admin"), False),
        (res(CAROL, "impersonate", "groups", name="system:masters"), False),
    ],
)
def test_rbac_decisions(authorizer: Authorizer, attrs: Attributes, allowed: bool) -> None:
    """Each request is allowed exactly when a bound rule covers verb, group, resource, name and scope."""
    assert authorizer.authorize(attrs).allowed is allowed


def test_allowed_decision_names_the_binding(authorizer: Authorizer) -> None:
    """The reason says which binding, role and subject allowed it, as the api-server's does."""
    reason = authorizer.authorize(res(ALICE, "list", "pods", "team-a")).reason
    assert reason == 'RBAC: allowed by RoleBinding "readers/team-a" of Role "pod-reader" to Group "team-a"'


def test_forbidden_message_matches_the_api_server() -> None:
    """The 403 message has the api-server's wording for namespaced and cluster-scoped requests."""
    assert res(MALLORY, "list", "pods", "default").forbidden_message() == (
        'pods is forbidden: User "mallory" cannot list resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert res(MALLORY, "get", "nodes", name="n1").forbidden_message() == (
        'nodes "n1" is forbidden: User "mallory" cannot get resource "nodes" in API group "" '
        "at the cluster scope"
    )
