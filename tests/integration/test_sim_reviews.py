"""Impersonation, the review kinds, service-account tokens, discovery, and the exact record at
/debug/sim/state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_sim_api import Api, Client, make_api

SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


@pytest.fixture
async def api(aiohttp_client: Client, tmp_path: Path) -> Api:
    return await make_api(aiohttp_client, tmp_path)


async def whoami(api: Api, user: str, headers: dict[str, str]) -> tuple[int, Any]:
    return await api.call("POST", WHOAMI, user=user, headers=headers, body={"kind": "SelfSubjectReview"})


@pytest.mark.parametrize(
    ("user", "headers", "code", "name", "groups"),
    [
        ("admin", {}, 201, "admin", ["system:masters", "system:authenticated"]),
        ("admin", {"Impersonate-User": "alice"}, 201, "alice", ["system:authenticated"]),
        (
            "admin",
            {"Impersonate-User": "alice", "Impersonate-Group": "team-a"},
            201,
            "alice",
            ["team-a", "system:authenticated"],
        ),
        (
            "admin",
            {"Impersonate-User": "system:serviceaccount:ns1:bot"},
            201,
            "system:serviceaccount:ns1:bot",
            ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"],
        ),
        ("admin", {"Impersonate-Group": "team-a"}, 400, None, None),
        ("alice", {"Impersonate-User": "admin"}, 403, None, None),
        ("mallory", {"Impersonate-User": "mallory", "Impersonate-Group": "system:masters"}, 403, None, None),
    ],
)
async def test_impersonation(
    api: Api, user: str, headers: dict[str, str], code: int, name: str | None, groups: list[str] | None
) -> None:
    """Impersonate-* headers change the user only for callers allowed to impersonate each part."""
    status, body = await whoami(api, user, headers)
    assert status == code
    if name is not None:
        assert body["status"]["userInfo"]["username"] == name
        assert body["status"]["userInfo"]["groups"] == groups


async def test_impersonated_extra_and_uid_need_their_own_permission(api: Api) -> None:
    """Extra and uid are granted through userextras and uids, which admin has and alice lacks."""
    headers = {"Impersonate-User": "bob", "Impersonate-Uid": "42", "Impersonate-Extra-Scopes": "view"}
    status, body = await whoami(api, "admin", headers)
    assert status == 201
    assert body["status"]["userInfo"]["uid"] == "42" and body["status"]["userInfo"]["extra"] == {
        "scopes": ["view"]
    }


async def test_self_subject_access_review(api: Api) -> None:
    """`kubectl auth can-i` answers from RBAC for the caller."""
    spec = {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}
    assert (await api.call("POST", SSAR, body={"spec": spec}))[1]["status"]["allowed"] is True
    assert (await api.call("POST", SSAR, user="mallory", body={"spec": spec}))[1]["status"][
        "allowed"
    ] is False


async def test_subject_access_review_needs_permission_and_evaluates_the_named_user(api: Api) -> None:
    """A SubjectAccessReview is for callers allowed to create it, and reviews the user in its spec."""
    sar = {
        "spec": {
            "user": "x",
            "groups": ["system:masters"],
            "resourceAttributes": {"verb": "delete", "resource": "nodes"},
        }
    }
    status, body = await api.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=sar)
    assert status == 201 and body["status"]["allowed"] is True and "cluster-admin" in body["status"]["reason"]
    status, _ = await api.call(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", user="alice", body=sar
    )
    assert status == 403


async def test_token_reviews_are_counted_per_reviewed_user(api: Api) -> None:
    """TokenReview answers from the token file and the record counts reviews by reviewed user."""
    for token in ("t-alice", "t-alice", "t-mallory", "nope"):
        status, body = await api.call("POST", TOKEN_REVIEWS, body={"spec": {"token": token}})
        assert status == 201
    assert body["status"] == {"authenticated": False, "error": "invalid bearer token"}
    state = (await api.call("GET", "/debug/sim/state"))[1]
    assert state["tokenReviews"] == {"alice": 2, "mallory": 1}
    assert state["totals"]["tokenReviews"] == 4 and state["totals"]["tokenReviewsFailed"] == 1


async def test_the_record_counts_every_request_exactly(api: Api) -> None:
    """Requests per effective user and verb, impersonators, 401s; reading the record is not counted."""
    for _ in range(3):
        await api.call("GET", "/api/v1/namespaces/default/pods", user="alice")
    await api.call("GET", "/api/v1/namespaces/default/pods/x", user="mallory")
    await api.call("GET", "/api/v1/namespaces/default/pods", headers={"Impersonate-User": "bob"})
    async with api.client.get("/api/v1/pods", headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401
    await api.call("GET", "/debug/sim/state")
    state = (await api.call("GET", "/debug/sim/state"))[1]
    assert state["users"] == {
        "alice": {"requests": 3, "verbs": {"list": 3}},
        "bob": {"requests": 1, "verbs": {"list": 1}},
        "mallory": {"requests": 1, "verbs": {"get": 1}},
    }
    assert state["impersonators"] == {"admin": 1}
    assert state["totals"]["requests"] == 5 and state["totals"]["unauthenticated"] == 1
    await api.call("DELETE", "/debug/sim/state")
    assert (await api.call("GET", "/debug/sim/state"))[1]["totals"]["requests"] == 0


async def test_service_account_tokens_authenticate(api: Api) -> None:
    """A TokenRequest token is a JWT the simulator accepts as the service account, and OIDC is served."""
    await api.call("POST", "/api/v1/namespaces/default/serviceaccounts", body={"metadata": {"name": "bot"}})
    status, request = await api.call(
        "POST", "/api/v1/namespaces/default/serviceaccounts/bot/token", body={"spec": {"audiences": ["api"]}}
    )
    assert status == 201
    token = request["status"]["token"]
    async with api.client.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert (await resp.json())["status"]["userInfo"]["username"] == "system:serviceaccount:default:bot"
    assert "keys" in (await api.call("GET", "/openid/v1/jwks"))[1]


async def test_discovery_and_openapi_describe_the_kind_table(api: Api) -> None:
    """/api/v1 lists subresources; OpenAPI v3 PATCH operations advertise fieldValidation."""
    _, core = await api.call("GET", "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/log", "pods/exec", "pods/status", "namespaces", "serviceaccounts/token"} <= names
    _, groups = await api.call("GET", "/apis")
    assert {"apps", "rbac.authorization.k8s.io", "coordination.k8s.io", "events.k8s.io"} <= {
        g["name"] for g in groups["groups"]
    }
    _, root = await api.call("GET", "/openapi/v3")
    _, apps = await api.call("GET", root["paths"]["apis/apps/v1"]["serverRelativeURL"])
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
