"""Discovery and OpenAPI documents generated from the kind table.

Serves /version, /api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v> in the legacy (unaggregated) shapes
— kubectl falls back to them when the answer is plain `application/json` — and OpenAPI v3 documents
whose PATCH operations advertise `fieldValidation`, which makes kubectl leave validation to the
server instead of validating against a schema. It must never describe a kind the table lacks.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chaos.sim.kinds import TABLE, Kind

Doc = dict[str, Any]
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-chaos-sim",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_SUBRESOURCES: dict[str, tuple[str, str, str, list[str]]] = {
    # subresource -> (group, version, kind, verbs); "" group/version means the parent's
    "status": ("", "", "", ["get", "patch", "update"]),
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    "log": ("", "", "Pod", ["get"]),
    "exec": ("", "", "PodExecOptions", ["create", "get"]),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
}


def _resource(kind: Kind) -> Doc:
    doc: Doc = {
        "name": kind.resource,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        doc["shortNames"] = list(kind.short_names)
    if kind.categories:
        doc["categories"] = list(kind.categories)
    return doc


def _subresource(kind: Kind, sub: str) -> Doc:
    group, version, sub_kind, verbs = _SUBRESOURCES[sub]
    doc: Doc = {
        "name": f"{kind.resource}/{sub}",
        "singularName": "",
        "namespaced": kind.namespaced,
        "kind": sub_kind or kind.kind,
        "verbs": verbs,
    }
    if group:
        doc["group"], doc["version"] = group, version
    return doc


def resource_list(group: str, version: str) -> Doc | None:
    kinds = TABLE.in_group_version(group, version)
    if not kinds:
        return None
    resources = []
    for kind in kinds:
        resources.append(_resource(kind))
        resources.extend(_subresource(kind, sub) for sub in kind.subresources)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def api_versions() -> Doc:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    }


def _group(name: str, versions: list[str]) -> Doc:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> Doc:
    groups = [_group(g, vs) for g, vs in TABLE.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> Doc | None:
    versions = TABLE.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


# -- OpenAPI ------------------------------------------------------------------------------------
def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _query(name: str) -> Doc:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _patch_operation(kind: Kind) -> Doc:
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    schema = {"$ref": f"#/components/schemas/{_schema_name(kind)}"}
    # No strategic-merge content type: kubectl then builds its patches from its compiled-in types.
    content = {
        t: {"schema": {"type": "object"}}
        for t in (
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        )
    }
    return {
        "operationId": f"patch{kind.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk,
        "parameters": [_query(n) for n in ("dryRun", "fieldManager", "fieldValidation", "force")],
        "requestBody": {"content": content, "required": True},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}},
    }


def _schema_name(kind: Kind) -> str:
    group = ".".join(reversed(kind.group.split("."))) if kind.group else "core"
    return f"io.k8s.api.{group}.{kind.version}.{kind.kind}"


def openapi_v3_group_version(group: str, version: str) -> Doc | None:
    kinds = [k for k in TABLE.in_group_version(group, version) if k.stored]
    if not TABLE.in_group_version(group, version):
        return None
    paths: Doc = {}
    for kind in kinds:
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        paths[f"/{_gv_path(group, version)}{scope}/{kind.resource}/{{name}}"] = {
            "patch": _patch_operation(kind)
        }
    schemas = {
        _schema_name(k): {
            "type": "object",
            "x-kubernetes-group-version-kind": [{"group": k.group, "version": k.version, "kind": k.kind}],
        }
        for k in kinds
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (chaos sim)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_root() -> Doc:
    paths = {}
    for group, versions in TABLE.group_versions().items():
        for version in versions:
            doc = openapi_v3_group_version(group, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            paths[_gv_path(group, version)] = {
                "serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}?hash={digest}"
            }
    return {"paths": paths}


def openapi_v2() -> Doc:
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (chaos sim)", "version": "v1.32.0"},
        "paths": {},
        "definitions": {},
    }
