"""The review kinds, answered from the same logic that guards every request and never stored:
TokenReview, SubjectAccessReview (+ Local, Self) and SelfSubjectReview.

It must never reveal why a token failed beyond "authenticated: false", and never count a review
of one user as a request by that user (the recorder counts TokenReviews separately).
"""

from __future__ import annotations

from typing import Any

from chaos.sim.authn import User
from chaos.sim.rbac import Attributes
from chaos.sim.simulation import Simulation
from chaos.sim.status import bad_request

Obj = dict[str, Any]


def token_review(sim: Simulation, body: Obj) -> Obj:
    spec = body.get("spec") or {}
    token = spec.get("token") or ""
    user = sim.authenticator.from_token(token) if token else None
    sim.recorder.token_review(user.name if user else None)
    status: Obj = {"authenticated": user is not None}
    if user is not None:
        status["user"] = user.info()
        status["audiences"] = spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]
    else:
        status["error"] = "invalid bearer token"
    return {**body, "status": status}


def _attributes(user: User, spec: Obj, namespace: str = "") -> Attributes:
    resource = spec.get("resourceAttributes")
    if resource is not None:
        return Attributes(
            user,
            resource.get("verb", ""),
            True,
            resource.get("group", ""),
            resource.get("resource", ""),
            resource.get("subresource", ""),
            namespace or resource.get("namespace", ""),
            resource.get("name", ""),
        )
    non_resource = spec.get("nonResourceAttributes")
    if non_resource is not None:
        return Attributes(user, non_resource.get("verb", ""), False, path=non_resource.get("path", ""))
    raise bad_request(
        "SubjectAccessReview.authorization.k8s.io is invalid: spec: Invalid value: "
        "resourceAttributes or nonResourceAttributes must be set"
    )


def _answer(sim: Simulation, body: Obj, attrs: Attributes) -> Obj:
    decision = sim.authorizer.authorize(attrs)
    status: Obj = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return {**body, "status": status}


def subject_access_review(sim: Simulation, body: Obj, namespace: str = "") -> Obj:
    spec = body.get("spec") or {}
    extra = {k: tuple(v) for k, v in (spec.get("extra") or {}).items()}
    user = User(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()), extra)
    sim.recorder.access_review(user.name)
    return _answer(sim, body, _attributes(user, spec, namespace))


def self_subject_access_review(sim: Simulation, body: Obj, caller: User) -> Obj:
    return _answer(sim, body, _attributes(caller, body.get("spec") or {}))


def self_subject_review(caller: User) -> Obj:
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": caller.info()},
    }


def answer(sim: Simulation, resource: str, body: Obj, caller: User, namespace: str) -> Obj:
    if resource == "tokenreviews":
        return token_review(sim, body)
    if resource == "selfsubjectreviews":
        return self_subject_review(caller)
    if resource == "selfsubjectaccessreviews":
        return self_subject_access_review(sim, body, caller)
    if resource == "localsubjectaccessreviews":
        return subject_access_review(sim, body, namespace)
    return subject_access_review(sim, body)
