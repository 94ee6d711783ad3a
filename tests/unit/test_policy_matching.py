"""Requests match exempt rules, then tenants by precedence and their rules in order, then the catch-all."""

from __future__ import annotations

import pytest

from guard.admission.config import AdmissionSettings
from guard.admission.rules import CATCH_ALL_TENANT, EXEMPT_TENANT, PolicySet, compile_policies, opaque_id
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.policy.loading import load_text
from guard.policy.model import TenantPolicy

TENANTS = {
    "ops": """
spec:
  precedence: 10
  subjects: [{kind: Group, name: ops}]
  rules:
    - {name: everything}
""",
    "team-a": """
spec:
  subjects:
    - {kind: Group, name: team-a}
    - {kind: User, name: alice}
    - {kind: User, name: "ci-*"}
    - {kind: ServiceAccount, namespace: team-a, name: "*"}
  namespaces: ["team-a-*"]
  rules:
    - name: logs
      resources: [pods/log]
    - name: scale
      resources: ["*/scale"]
    - name: pod-subresources
      resources: ["pods/*"]
    - name: named
      resources: [configmaps]
      resourceNames: [settings]
    - name: no-watch-reads
      verbs: [get, list, watch]
      resources: [pods, deployments]
      namespaces: ["team-a", "team-a-*"]
      not: {verbs: [watch]}
    - name: cluster-scoped
      verbs: [get, list]
      namespaces: [""]
    - name: discovery
      verbs: [get]
      nonResourceURLs: ["/api", "/apis/*"]
    - name: apps-writes
      verbs: [create, update, patch, delete, deletecollection]
      apiGroups: [apps]
    - name: dev-only
      clusters: [dev]
      verbs: [delete]
""",
}


def _policy(name: str, body: str) -> TenantPolicy:
    text = f"apiVersion: guard.io/v1alpha1\nkind: TenantPolicy\nmetadata: {{name: {name}}}\n{body}"
    policies, problems = load_text(text, name)
    assert len(policies) == 1, problems
    policy = policies[0]
    return policy


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    compiled, problems = compile_policies([_policy(n, b) for n, b in TENANTS.items()], AdmissionSettings())
    assert problems == []
    return compiled


ALICE = Identity("alice", ("system:authenticated",))
CI = Identity("ci-42", ("system:authenticated",))
SA = Identity("system:serviceaccount:team-a:builder", ("system:serviceaccounts",))
OWNED_SA = Identity("system:serviceaccount:team-a-dev:bot", ())
OTHER_SA = Identity("system:serviceaccount:team-b:bot", ())
GROUP = Identity("bob", ("team-a",))
OPS_AND_A = Identity("carol", ("team-a", "ops"))
STRANGER = Identity("mallory", ("system:authenticated",))
MASTER = Identity("root", ("system:masters",))
NODE = Identity("system:node:n1", ("system:nodes",))
CONTROLLER = Identity("system:serviceaccount:kube-system:ctrl", ())

ROWS = [
    # identity, method, path, query, cluster, expected tenant, expected rule
    (ALICE, "GET", "/api/v1/namespaces/team-a/pods/p/log", {}, "dev", "team-a", "logs"),
    (ALICE, "PUT", "/apis/apps/v1/namespaces/x/deployments/d/scale", {}, "dev", "team-a", "scale"),
    (ALICE, "GET", "/api/v1/namespaces/team-a/pods/p/status", {}, "dev", "team-a", "pod-subresources"),
    (ALICE, "GET", "/api/v1/namespaces/team-a/configmaps/settings", {}, "dev", "team-a", "named"),
    (ALICE, "GET", "/api/v1/namespaces/team-a/configmaps", {}, "dev", CATCH_ALL_TENANT, "default"),
    (ALICE, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "team-a", "no-watch-reads"),
    (ALICE, "GET", "/api/v1/namespaces/team-a-dev/pods/p", {}, "dev", "team-a", "no-watch-reads"),
    (ALICE, "GET", "/api/v1/namespaces/team-a/pods", {"watch": "1"}, "dev", CATCH_ALL_TENANT, "default"),
    (ALICE, "GET", "/api/v1/namespaces/team-b/pods", {}, "dev", CATCH_ALL_TENANT, "default"),
    (ALICE, "GET", "/api/v1/nodes", {}, "dev", "team-a", "cluster-scoped"),
    (ALICE, "GET", "/api", {}, "dev", "team-a", "discovery"),
    (ALICE, "GET", "/apis/apps/v1", {}, "dev", "team-a", "discovery"),
    (ALICE, "GET", "/version", {}, "dev", CATCH_ALL_TENANT, "default"),
    (ALICE, "POST", "/apis/apps/v1/namespaces/x/deployments", {}, "dev", "team-a", "apps-writes"),
    (ALICE, "POST", "/api/v1/namespaces/x/configmaps", {}, "dev", CATCH_ALL_TENANT, "default"),
    (ALICE, "DELETE", "/api/v1/namespaces/x/configmaps/c", {}, "dev", "team-a", "dev-only"),
    (ALICE, "DELETE", "/api/v1/namespaces/x/configmaps/c", {}, "prod", CATCH_ALL_TENANT, "default"),
    (CI, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "team-a", "no-watch-reads"),
    (SA, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "team-a", "no-watch-reads"),
    (OWNED_SA, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "team-a", "no-watch-reads"),
    (OTHER_SA, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", CATCH_ALL_TENANT, "default"),
    (GROUP, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "team-a", "no-watch-reads"),
    (OPS_AND_A, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", "ops", "everything"),
    (STRANGER, "GET", "/api/v1/namespaces/team-a/pods", {}, "dev", CATCH_ALL_TENANT, "default"),
    (MASTER, "DELETE", "/api/v1/namespaces/team-a", {}, "dev", EXEMPT_TENANT, "system-masters"),
    (NODE, "PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", {}, "dev",
     EXEMPT_TENANT, "node-leases"),
    (NODE, "PATCH", "/api/v1/nodes/n1/status", {}, "dev", EXEMPT_TENANT, "node-status"),
    (NODE, "GET", "/api/v1/pods", {}, "dev", CATCH_ALL_TENANT, "default"),
    (CONTROLLER, "PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l", {}, "dev", EXEMPT_TENANT,
     "leader-election"),
    (CONTROLLER, "PUT", "/api/v1/namespaces/kube-system/endpoints/kube-scheduler", {}, "dev", EXEMPT_TENANT,
     "leader-election-legacy-locks"),
    (OTHER_SA, "PUT", "/apis/coordination.k8s.io/v1/namespaces/team-b/leases/l", {}, "dev",
     CATCH_ALL_TENANT, "default"),
    (NODE, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", {}, "dev",
     CATCH_ALL_TENANT, "default"),
    (CONTROLLER, "DELETE", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l", {}, "dev",
     CATCH_ALL_TENANT, "default"),
    (Identity("anon", ()), "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l",
     {}, "dev", CATCH_ALL_TENANT, "default"),
]


@pytest.mark.parametrize(("identity", "method", "path", "query", "cluster", "tenant", "rule"), ROWS)
def test_the_first_matching_rule_by_precedence_decides(
    policies: PolicySet, identity: Identity, method: str, path: str, query: dict[str, str], cluster: str,
    tenant: str, rule: str,
) -> None:
    """Subjects, verbs, resources and subresources, namespaces, negation, clusters, precedence, exempt."""
    match = policies.match(identity, classify(method, path, query), cluster)
    assert (match.tenant, match.rule.name) == (tenant, rule)
    assert match.exempt == (tenant == EXEMPT_TENANT)


@pytest.mark.parametrize(("user", "groups", "rule"), [
    ("system:kube-scheduler", ("system:authenticated",), "leader-election"),
    ("system:kube-controller-manager", ("system:authenticated",), "leader-election"),
    ("system:serviceaccount:kube-system:endpoint-controller", ("system:serviceaccounts",), "leader-election"),
    ("mallory", ("system:authenticated",), "default"),  # the old rule named every authenticated user
    ("system:serviceaccount:team-b:bot", ("system:serviceaccounts",), "default"),  # and every SA
])
def test_only_the_control_plane_elects_leaders_exempt(
        policies: PolicySet, user: str, groups: tuple[str, ...], rule: str) -> None:
    """Lease renewals in kube-system are exempt for kube-controller-manager, kube-scheduler and the
    kube-system service accounts (APF's system-leader-election), not for anyone authenticated."""
    info = classify("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sched", {})
    assert policies.match(Identity(user, groups), info, "dev").rule.name == rule


def test_bucket_keys_follow_the_quota_scope() -> None:
    """tenant scope: one bucket; user scope: per user; namespace scope: per namespace."""
    body = """
spec:
  subjects: [{kind: Group, name: g}]
  rules:
    - {name: t, verbs: [get], quota: {rate: 1/s, scope: tenant}}
    - {name: u, verbs: [list], quota: {rate: 1/s, scope: user}}
    - {name: n, verbs: [create], quota: {rate: 1/s, scope: namespace}}
"""
    compiled, _ = compile_policies([_policy("keys", body)], AdmissionSettings())
    who = Identity("zoe", ("g",))
    keys = [compiled.match(who, classify(m, "/api/v1/namespaces/ns1/pods" + s, {}), "dev").bucket_key
            for m, s in (("GET", "/p"), ("GET", ""), ("POST", ""))]
    assert keys == ["{keys}:t", "{keys}:u:u:zoe", "{keys}:n:ns:ns1"]


def test_header_ids_are_opaque_and_stable(policies: PolicySet) -> None:
    """Tenant and rule are named in headers by short hashes, never by name."""
    match = policies.match(ALICE, classify("GET", "/api/v1/namespaces/team-a/pods", {}), "dev")
    assert match.rule.tenant_id == opaque_id("team-a") and "team-a" not in match.rule.tenant_id
    assert match.rule.rule_id == opaque_id("team-a", "no-watch-reads") != match.rule.tenant_id


def test_header_ids_cannot_be_reversed_from_a_list_of_names(policies: PolicySet) -> None:
    """The ids are keyed: hashing likely tenant names (sha256, as guard once did) matches nothing."""
    import hashlib

    match = policies.match(ALICE, classify("GET", "/api/v1/namespaces/team-a/pods", {}), "dev")
    guesses = {hashlib.sha256(name.encode()).hexdigest()[:12] for name in ("team-a", "team-b", "ops")}
    assert match.rule.tenant_id not in guesses


def test_replicas_sharing_an_id_secret_agree_on_ids() -> None:
    """Two compilations with one admission.idSecret give the same ids; another secret, others."""
    policy = load_text("apiVersion: guard.io/v1alpha1\nkind: TenantPolicy\nmetadata: {name: t}\n"
                       "spec:\n  subjects: [{kind: Group, name: g}]\n  rules: [{name: r}]\n", "t.yaml")[0][0]

    def ids(secret: str) -> tuple[str, str]:
        rule = compile_policies([policy], AdmissionSettings(id_secret=secret))[0].tenants[-1].rules[0]
        return rule.tenant_id, rule.rule_id

    assert ids("fleet-secret-0123456789") == ids("fleet-secret-0123456789") != ids("other-secret-0123456789")
    assert ids("fleet-secret-0123456789")[0] == opaque_id("t", secret=b"fleet-secret-0123456789")
