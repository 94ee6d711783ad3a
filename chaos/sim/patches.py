"""The four patch types the api-server accepts, applied to plain JSON objects.

JSON merge patch (RFC 7386) and JSON patch (RFC 6902) are exact. Strategic merge patch is an honest
approximation: maps merge, lists of objects merge by the merge keys of the kind's schema (a
container's ports by containerPort, a Service's by port; a name-keyed table for kinds without
one), other lists are replaced, and the `$patch`, `$retainKeys`, `$setElementOrder` and
`$deleteFromPrimitiveList` directives are honoured or dropped.
Server-side apply uses the same merge. This module must never touch the store or HTTP.
"""

from __future__ import annotations

import copy
from typing import Any

from chaos.sim import schema
from chaos.sim.status import StatusError, bad_request

FALLBACK_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "tolerations": "key",
    "hostAliases": "ip",
    "conditions": "type",
    "secrets": "name",
}
MERGE_CONTENT_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch ---------------------------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _walk(doc, parts[:-1]), parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        parent[last] = value
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _walk(doc, parts[:-1]), parts[-1]
    value = parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    return value


def _op(doc: Any, op: dict[str, Any]) -> Any:
    kind, parts = op.get("op"), _pointer(str(op.get("path", "")))
    if kind == "add":
        return _add(doc, parts, copy.deepcopy(op.get("value")))
    if kind == "remove":
        _remove(doc, parts)
    elif kind == "replace":
        _remove(doc, parts)
        return _add(doc, parts, copy.deepcopy(op.get("value")))
    elif kind in ("move", "copy"):
        source = _pointer(str(op.get("from", "")))
        value = _remove(doc, source) if kind == "move" else copy.deepcopy(_walk(doc, source))
        return _add(doc, parts, value)
    elif kind == "test":
        if _walk(doc, parts) != op.get("value"):
            raise StatusError(422, f"testing value {op.get('path')} failed", reason="Invalid")
    else:
        raise bad_request(f"Unexpected kind of JSON patch operation: {kind!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    try:
        for op in ops:
            doc = _op(doc, op)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise StatusError(
            422, f"the server rejected our request due to an error in our request: {e}", reason="Invalid"
        ) from e
    return doc


# -- strategic merge ----------------------------------------------------------------------------
def _merge_list(key: str, target: list[Any], patch: list[Any], message: str | None) -> list[Any]:
    item_message, merge_key = _keyed(message, key)
    if not merge_key or not all(isinstance(p, dict) for p in patch + target):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if any(p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if "$patch" not in p]
    result = [copy.deepcopy(t) for t in target]
    for item in patch:
        index = next((i for i, t in enumerate(result) if t.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge({}, item, item_message))
        else:
            result[index] = strategic_merge(result[index], item, item_message)
    return result


def _keyed(message: str | None, key: str) -> tuple[str | None, str]:
    """The message of field `key` and its merge key: the schema's, else the fallback table's."""
    if message is None:
        return None, FALLBACK_MERGE_KEYS.get(key, "")
    return schema.merge_key(message, key)


def strategic_merge(target: Any, patch: Any, message: str | None = None) -> Any:
    """Merge `patch` into `target`; `message` is the target's schema message (None: the fallback keys)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(key, current if isinstance(current, list) else [], value, message)
        else:
            result[key] = strategic_merge(result.get(key), value, _keyed(message, key)[0])
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def apply_patch(patch_type: str, target: Any, patch: Any, message: str | None = None) -> Any:
    if patch_type == "json":
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    if patch_type == "merge":
        return merge_patch(target, patch)
    return strategic_merge(target, patch, message)
