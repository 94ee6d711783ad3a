"""Create, update, patch and delete of stored objects, with the api-server's metadata rules.

Server-set metadata (uid, creationTimestamp, resourceVersion, generation, managedFields) is the
server's; required fields are validated after defaulting; every write records its manager's fields
(`chaos.sim.managed`) and an apply that changes another's is a conflict; a pod is deleted
gracefully; status is written only through the status subresource of kinds that have one;
`dryRun=All` answers what would be stored without storing it. It must never authorize: the middleware has.
"""

from __future__ import annotations

import copy
from typing import Any

from chaos.sim import cluster, managed, pods, schema
from chaos.sim.bootstrap import load_objects
from chaos.sim.calls import Call, check_fields, check_identity, read_object, respond
from chaos.sim.defaults import apply_defaults
from chaos.sim.kinds import TABLE, Kind
from chaos.sim.patches import MERGE_CONTENT_TYPES, apply_patch, strategic_merge
from chaos.sim.scale import from_scale, to_scale
from chaos.sim.status import StatusError, bad_request, conflict, invalid, invalid_fields, not_found
from chaos.sim.store import now_rfc3339

Obj = dict[str, Any]
_NAMESPACES = TABLE.lookup("", "v1", "namespaces")
_WITH_GENERATION = frozenset({
    "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController", "Job", "CronJob",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "NetworkPolicy", "CustomResourceDefinition",
    "FlowSchema", "PriorityLevelConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "IngressClass", "APIService",
})  # fmt: skip


def _manage(call: Call, old: Obj | None, obj: Obj, operation: str, applied: Obj | None = None) -> None:
    """Record the write in managedFields: the fields it set now belong to its manager."""
    entry = {
        "manager": call.field_manager(),
        "operation": operation,
        "apiVersion": call.kind.api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
    }
    if call.target.subresource:
        entry["subresource"] = call.target.subresource
    managed.record(old, obj, entry, schema.message(call.kind), applied=applied)


def _generation(kind: Kind, obj: Obj, value: int) -> None:
    """Workloads and custom resources count spec changes; Pods, ConfigMaps, Namespaces have no generation."""
    if kind.kind in _WITH_GENERATION or kind.custom:
        obj["metadata"]["generation"] = value
    else:
        obj["metadata"].pop("generation", None)


def validate(call: Call, obj: Obj) -> None:
    """The api-server's "Required value" for required fields the object lacks (all of them at once)."""
    missing = schema.missing_required(call.kind, obj)
    if missing:
        name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
        raise invalid_fields(call.kind.kind, call.kind.group, name, [(m, "Required value") for m in missing])


def _require_namespace(call: Call) -> None:
    assert _NAMESPACES is not None
    if call.kind.namespaced and call.sim.store.find(_NAMESPACES, "", call.target.namespace) is None:
        raise not_found("namespaces", "", call.target.namespace)


def _spec_changed(old: Obj, new: Obj) -> bool:
    ignored = ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in old.items() if k not in ignored} != {
        k: v for k, v in new.items() if k not in ignored
    }


def create_object(call: Call, body: Obj, *, operation: str = "Update") -> tuple[Obj, dict[str, str]]:
    warnings = check_fields(call, body)
    meta = body.setdefault("metadata", {})
    if not meta.get("name") and not meta.get("generateName"):
        raise invalid(
            call.kind.kind,
            call.kind.group,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        )
    _require_namespace(call)
    store = call.sim.store
    obj = store.prepare_create(call.kind, call.namespace, body)
    _generation(call.kind, obj, 1)
    apply_defaults(obj)
    _manage(call, None, obj, operation, applied=body if operation == "Apply" else None)
    validate(call, obj)
    if call.dry_run:
        return obj, warnings
    obj = store.insert(call.kind, call.namespace, obj)
    if call.kind.kind == "Namespace":
        load_objects(store, cluster.namespace_objects(obj["metadata"]["name"]))
    return obj, warnings


async def create(call: Call) -> Any:
    body = check_identity(call, await read_object(call.request))
    obj, warnings = create_object(call, body)
    return respond(obj, 201, headers=warnings)


def store_update(
    call: Call, current: Obj, new: Obj, *, operation: str = "Update", applied: Obj | None = None
) -> Obj:
    """Write `new` over `current` keeping what the server owns; the stored (or dry-run) result."""
    new = copy.deepcopy(new)
    meta = new.setdefault("metadata", {})
    wanted = meta.get("resourceVersion")
    if wanted and wanted != current["metadata"]["resourceVersion"]:
        raise conflict(call.kind.resource, call.kind.group, call.target.name)
    if call.target.subresource == "ephemeralcontainers":
        new = pods.with_ephemeral(current, (new.get("spec") or {}).get("ephemeralContainers") or [], meta)
    elif call.kind.has_status:
        if call.target.subresource == "status":
            new = {**copy.deepcopy(current), "status": new.get("status"), "metadata": meta}
        else:
            new["status"] = copy.deepcopy(current.get("status"))
    _generation(call.kind, new, current["metadata"].get("generation", 1) + _spec_changed(current, new))
    given, stored = meta.get("managedFields"), current["metadata"].get("managedFields", [])
    # A client that rewrites managedFields (kubectl's client-side-apply upgrade does) has them kept
    # as written, and the write is not tracked on top, as the api-server does.
    reset = bool(given) and given != stored and operation != "Apply"
    meta["managedFields"] = given if reset else stored
    apply_defaults(new)
    if not reset:
        _manage(call, current, new, operation, applied)
    if call.target.subresource not in ("status", "ephemeralcontainers"):
        validate(call, new)
    if call.dry_run:
        return {
            **new,
            "metadata": {
                **meta,
                **{k: current["metadata"][k] for k in ("uid", "creationTimestamp", "resourceVersion")},
            },
        }
    return call.sim.store.update(call.kind, call.namespace, call.target.name, new)


async def update(call: Call) -> Any:
    body = check_identity(call, await read_object(call.request))
    current = call.sim.store.get(call.kind, call.namespace, call.target.name)
    if call.target.subresource == "scale":
        return respond(to_scale(store_update(call, current, from_scale(current, body))))
    warnings = check_fields(call, body)
    return respond(store_update(call, current, body), headers=warnings)


def _patch_type(call: Call) -> str:
    patch_type = MERGE_CONTENT_TYPES.get(call.request.content_type)
    if patch_type is None:
        raise StatusError(
            415,
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(MERGE_CONTENT_TYPES)}",
        )
    return patch_type


async def patch(call: Call) -> Any:
    patch_type = _patch_type(call)
    body = await read_object(call.request)
    if patch_type == "apply" and not call.query.get("fieldManager"):
        raise StatusError(
            422,
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
            "required for apply patch",
            reason="Invalid",
        )
    current = call.sim.store.find(call.kind, call.namespace, call.target.name)
    if current is None:
        if patch_type != "apply" or call.target.subresource:
            raise not_found(call.kind.resource, call.kind.group, call.target.name)
        obj, warnings = create_object(call, check_identity(call, body), operation="Apply")
        return respond(obj, 201, headers=warnings)
    if patch_type == "apply":
        check_identity(call, body)
    operation = "Apply" if patch_type == "apply" else "Update"
    if call.target.subresource == "scale":
        patched = apply_patch(patch_type, to_scale(current), body)
        return respond(
            to_scale(store_update(call, current, from_scale(current, patched), operation=operation))
        )
    message = schema.message(call.kind)
    if patch_type == "apply" and call.query.get("force", "").lower() not in ("true", "1"):
        found = managed.conflicts(current, body, message, call.field_manager())
        if found:
            raise managed.conflict_error(found)
    patched = (
        strategic_merge(current, body, message)
        if patch_type == "apply"
        else apply_patch(patch_type, current, body, message)
    )
    if not isinstance(patched, dict):
        raise bad_request("the patch did not produce an object")
    warnings = check_fields(call, patched)
    applied = body if patch_type == "apply" else None
    stored = store_update(call, current, patched, operation=operation, applied=applied)
    return respond(stored, headers=warnings)


def _check_preconditions(call: Call, current: Obj, options: Any) -> None:
    pre = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
    meta = current["metadata"]
    if (pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]) or (
        pre.get("uid") and pre["uid"] != meta["uid"]
    ):
        raise conflict(call.kind.resource, call.kind.group, call.target.name)


def delete_object(call: Call, kind: Kind, namespace: str, name: str, options: Any = None) -> Obj:
    store = call.sim.store
    if call.dry_run:
        return store.get(kind, namespace, name)
    grace = _grace(store.get(kind, namespace, name), options)
    if kind.kind == "Pod" and grace and call.sim.controllers is not None:
        pod = store.get(kind, namespace, name)
        if pod["metadata"].get("deletionTimestamp"):
            return pod
        return call.sim.controllers.terminate(kind, pod, grace)
    obj = store.delete(kind, namespace, name)
    if kind.kind == "Namespace":
        for other in TABLE.stored_keys():
            if other.namespaced:
                for (ns, other_name), _ in store.items(other, name):
                    store.delete(other, ns, other_name)
    return obj


async def delete(call: Call) -> Any:
    current = call.sim.store.get(call.kind, call.namespace, call.target.name)
    options = await read_object(call.request) if call.request.can_read_body else None
    _check_preconditions(call, current, options)
    grace_query = call.query.get("gracePeriodSeconds")
    if grace_query is not None and grace_query.lstrip("-").isdigit():
        options = {**(options if isinstance(options, dict) else {}), "gracePeriodSeconds": int(grace_query)}
    return respond(delete_object(call, call.kind, call.namespace, call.target.name, options))


def _grace(obj: Obj, options: Any) -> int:
    """A pod's grace period: the DeleteOptions', else its spec's (other kinds: none)."""
    if obj.get("kind") != "Pod" or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    asked = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    if asked is not None:
        return max(0, int(asked))
    return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)
