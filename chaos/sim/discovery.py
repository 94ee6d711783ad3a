"""Discovery documents generated from the kinds served: the built-in table and the custom resources
of stored CRDs.

Serves /version, /api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v> in the legacy (unaggregated) shapes
and, when the client asks for `as=APIGroupDiscoveryList` (kubectl does), /api and /apis as one
aggregated `apidiscovery.k8s.io/v2` document each. It must never describe a kind that is not served.
"""

from __future__ import annotations

from typing import Any

from chaos.sim.kinds import Kind

Doc = dict[str, Any]
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
AGGREGATED_VERSIONS = ("v2", "v2beta1")
"""v2 (kubectl 1.30+) and v2beta1 (kubectl 1.27-1.29): the same document under two versions."""
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
_PROXY = ["create", "delete", "get", "patch", "update"]
_SUBRESOURCES: dict[str, tuple[str, str, str, list[str]]] = {
    # subresource -> (group, version, kind, verbs); "" group/version/kind means the parent's
    "status": ("", "", "", ["get", "patch", "update"]),
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    "log": ("", "", "Pod", ["get"]),
    "exec": ("", "", "PodExecOptions", ["create", "get"]),
    "attach": ("", "", "PodAttachOptions", ["create", "get"]),
    "portforward": ("", "", "PodPortForwardOptions", ["create", "get"]),
    "binding": ("", "", "Binding", ["create"]),
    "eviction": ("policy", "v1", "Eviction", ["create"]),
    "ephemeralcontainers": ("", "", "", ["get", "patch", "update"]),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
    "finalize": ("", "", "", ["update"]),
    "approval": ("", "", "", ["get", "patch", "update"]),
    "proxy": ("", "", "", _PROXY),
}
_PROXY_KINDS = {"Pod": "PodProxyOptions", "Node": "NodeProxyOptions", "Service": "ServiceProxyOptions"}


def _sub(kind: Kind, sub: str) -> tuple[str, str, str, list[str]]:
    group, version, sub_kind, verbs = _SUBRESOURCES.get(sub, ("", "", "", ["get"]))
    if sub == "proxy":
        sub_kind = _PROXY_KINDS.get(kind.kind, "")
    return group or kind.group, version or kind.version, sub_kind or kind.kind, verbs


def group_versions(kinds: list[Kind]) -> dict[str, list[str]]:
    """Group -> served versions, preferred first, core group as ""; in table order."""
    out: dict[str, list[str]] = {}
    for kind in kinds:
        versions = out.setdefault(kind.group, [])
        if kind.version not in versions:
            versions.append(kind.version)
    return out


# -- legacy ---------------------------------------------------------------------------------------
def _resource(kind: Kind) -> Doc:
    doc: Doc = {"name": kind.resource, "singularName": kind.singular, "namespaced": kind.namespaced,
                "kind": kind.kind, "verbs": list(kind.verbs)}  # fmt: skip
    if kind.short_names:
        doc["shortNames"] = list(kind.short_names)
    if kind.categories:
        doc["categories"] = list(kind.categories)
    return doc


def _subresource(kind: Kind, sub: str) -> Doc:
    group, version, sub_kind, verbs = _sub(kind, sub)
    doc: Doc = {"name": f"{kind.resource}/{sub}", "singularName": "", "namespaced": kind.namespaced,
                "kind": sub_kind, "verbs": verbs}  # fmt: skip
    if (group, version) != (kind.group, kind.version):
        doc["group"], doc["version"] = group, version
    return doc


def resource_list(kinds: list[Kind], group: str, version: str) -> Doc | None:
    chosen = [k for k in kinds if k.group == group and k.version == version]
    if not chosen:
        return None
    resources = []
    for kind in chosen:
        resources.append(_resource(kind))
        resources.extend(_subresource(kind, sub) for sub in kind.subresources)
    groupversion = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": groupversion,
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


def api_group_list(kinds: list[Kind]) -> Doc:
    groups = [_group(g, vs) for g, vs in group_versions(kinds).items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(kinds: list[Kind], name: str) -> Doc | None:
    versions = group_versions(kinds).get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


# -- aggregated (apidiscovery.k8s.io/v2) ----------------------------------------------------------
def aggregated_version(accept: str) -> str | None:
    """The apidiscovery version of the first aggregated document the client accepts, if any."""
    for part in accept.split(","):
        params = dict(p.strip().partition("=")[::2] for p in part.split(";")[1:])
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") in AGGREGATED_VERSIONS:
                return params["v"]
        elif "json" in part or "*/*" in part:
            return None
    return None


def _aggregated_resource(kind: Kind) -> Doc:
    doc: Doc = {
        "resource": kind.resource,
        "responseKind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(kind.verbs),
    }
    if kind.short_names:
        doc["shortNames"] = list(kind.short_names)
    if kind.categories:
        doc["categories"] = list(kind.categories)
    subs = []
    for sub in kind.subresources:
        group, version, sub_kind, verbs = _sub(kind, sub)
        subs.append({"subresource": sub, "responseKind": {"group": group, "version": version,
                     "kind": sub_kind}, "verbs": verbs})  # fmt: skip
    if subs:
        doc["subresources"] = subs
    return doc


def aggregated(kinds: list[Kind], *, core: bool, version: str = "v2") -> Doc:
    items = []
    for group, versions in group_versions(kinds).items():
        if (group == "") != core:
            continue
        listed = [
            {"version": v, "resources": [_aggregated_resource(k) for k in kinds
                                          if k.group == group and k.version == v], "freshness": "Current"}
            for v in versions
        ]  # fmt: skip
        meta: Doc = {"name": group, "creationTimestamp": None} if group else {"creationTimestamp": None}
        items.append({"metadata": meta, "versions": listed})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}  # fmt: skip
