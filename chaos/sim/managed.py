"""Server-side apply's field ownership: which manager owns which fields (`managedFields`, FieldsV1)
and the conflicts an apply meets.

Every write records the fields it set for its manager and operation: an apply owns the fields of
its body, an update the fields it changed (an object's creation: all of them), and whoever sets a
field takes it from the others. An apply that would change a field another manager owns is a
conflict (409, one cause per field, as the api-server words it) unless it forces, or the field is
client-side apply's on an object it last-applied (kubectl's upgrade to server-side apply). Lists of objects
with a merge key are keyed by it (`k:{"name":"web"}`), other lists are one field. It must never
look at status (its own subresource) or at server-owned metadata.
"""

from __future__ import annotations

import json
from typing import Any

from chaos.sim import schema
from chaos.sim.status import StatusError

Obj = dict[str, Any]
Path = tuple[str, ...]
_SKIP = frozenset({"apiVersion", "kind", "status"})
_META = frozenset({"labels", "annotations", "finalizers", "ownerReferences"})
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CLIENT_SIDE_APPLY = "kubectl-client-side-apply"


def leaves(obj: Obj, message: str | None) -> dict[Path, Any]:
    """Every leaf field of an object (FieldsV1 path -> value), metadata limited to what users own."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in _SKIP or value is None:
            continue
        if key == "metadata":
            for meta_key in _META & set(value or {}):
                _walk(value[meta_key], ("f:metadata", f"f:{meta_key}"), None, meta_key, out)
            continue
        sub, _ = schema.merge_key(message, key) if message else (None, "")
        _walk(value, (f"f:{key}",), message, key, out, sub)
    return out


def _walk(
    value: Any, path: Path, parent: str | None, key: str, out: dict[Path, Any], sub: str | None = None
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            child, _ = schema.merge_key(sub, k) if sub else (None, "")
            _walk(v, (*path, f"f:{k}"), sub, k, out, child)
        return
    merge = schema.merge_key(parent, key)[1] if parent else ""
    if isinstance(value, list) and merge and all(isinstance(v, dict) and merge in v for v in value) and value:
        for item in value:
            k = "k:" + json.dumps({merge: item[merge]}, separators=(",", ":"))
            for field, v in item.items():
                child, _ = schema.merge_key(sub, field) if sub else (None, "")
                _walk(v, (*path, k, f"f:{field}"), sub, field, out, child)
        return
    out[path] = value


def to_fields(paths: set[Path]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields(tree: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (tree or {}).items():
        if key == ".":
            continue
        if sub:
            out |= from_fields(sub, (*prefix, key))
        else:
            out.add((*prefix, key))
    return out


def _owned(entries: list[Obj]) -> list[tuple[Obj, set[Path]]]:
    return [(e, from_fields(e.get("fieldsV1") or {})) for e in entries]


def conflicts(current: Obj, applied: Obj, message: str | None, manager: str) -> list[tuple[str, str, Path]]:
    """(manager, apiVersion, path) of each field the apply would change that another manager owns."""
    now = leaves(current, message)
    wanted = leaves(applied, message)
    found = []
    upgrading = LAST_APPLIED in (current["metadata"].get("annotations") or {})
    for entry, paths in _owned(current["metadata"].get("managedFields") or []):
        if entry.get("manager") == manager or entry.get("subresource"):
            continue
        if upgrading and entry.get("manager") == CLIENT_SIDE_APPLY:
            continue  # the api-server lets a server-side apply take over what client-side apply set

        for path in paths & set(wanted):
            if path in now and now[path] != wanted[path]:
                found.append((str(entry.get("manager")), str(entry.get("apiVersion")), path))
    return found


def conflict_error(found: list[tuple[str, str, Path]]) -> StatusError:
    def dotted(path: Path) -> str:
        return "".join(f"[{p[2:]}]" if p.startswith("k:") else f".{p[2:]}" for p in path)

    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}', "field": dotted(p)}
        for m, v, p in found
    ]
    lines = "\n".join(f'- {c["message"]}: {c["field"]}' for c in causes)
    noun = "conflict" if len(found) == 1 else "conflicts"
    message = f"Apply failed with {len(found)} {noun}: " + (
        f"{causes[0]['message']}: {causes[0]['field']}" if len(found) == 1 else lines
    )
    return StatusError(409, message, reason="Conflict", details={"causes": causes})


def record(
    old: Obj | None, new: Obj, entry: Obj, message: str | None, *, applied: Obj | None = None
) -> None:
    """Give `entry`'s manager the fields it set (applied: the body's; else the changed ones), take
    them from the others, and store the entries on `new`."""
    after = leaves(new, message)
    before = leaves(old, message) if old is not None else {}
    if applied is not None:
        mine = set(leaves(applied, message)) & set(after)
    else:
        mine = {p for p, v in after.items() if before.get(p, object()) != v}
    entries = []
    for other, paths in _owned(new["metadata"].get("managedFields") or []):
        if (other.get("manager"), other.get("operation")) == (entry["manager"], entry["operation"]):
            mine |= paths & set(after) if applied is None else set()
            continue
        kept = (paths - mine) & set(after)
        if kept:
            entries.append({**other, "fieldsV1": to_fields(kept)})
    entries.append({**entry, "fieldsV1": to_fields(mine)})
    new["metadata"]["managedFields"] = entries
