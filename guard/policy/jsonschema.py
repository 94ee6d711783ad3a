"""TenantPolicy as a JSON Schema (for editors and kubeconform) and as a CustomResourceDefinition (for
clusters that keep policies as objects), built from the constants the validator checks against
(`guard.policy.model`, `guard.policy.schema`), so the three cannot drift: a test feeds the
validator every field this schema names.

The schema checks shapes (fields, types, enums, patterns); meaning (a rate > 0, a known priority
level, duplicate rule names) stays with `guard policy validate`, which names file, line and field.
Pure: plain dicts, no YAML, no I/O.
"""

from __future__ import annotations

from typing import Any

from guard.policy import model, schema

SCHEMA_ID = "https://guard.io/schemas/tenantpolicy-v1alpha1.json"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
RATE_PATTERN = r"^\s*\d+(\.\d+)?\s*/\s*(\d*(\.\d+)?)\s*(ms|s|m|h)\s*$"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"
Schema = dict[str, Any]


def _strings(*, min_items: int = 1) -> Schema:
    return {"type": "array", "items": {"type": "string"}, "minItems": min_items}


def _object(properties: dict[str, Schema], *, required: tuple[str, ...] = ()) -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


def _duration() -> Schema:
    return {"type": ["string", "number"], "pattern": DURATION_PATTERN, "minimum": 0}


def _selector() -> dict[str, Schema]:
    verbs = sorted({*model.RESOURCE_VERBS, *model.HTTP_VERBS, "*"})
    fields: dict[str, Schema] = {key: _strings() for key in schema.SELECTOR_KEYS}
    fields["verbs"] = {"type": "array", "items": {"enum": verbs}, "minItems": 1}
    return fields


def _quota() -> Schema:
    return _object({
        "rate": {"type": "string", "pattern": RATE_PATTERN, "description": "tokens per period: 20/s, 1/5s"},
        "burst": {"type": "number", "minimum": 1},
        "scope": {"enum": list(model.SCOPES)},
        "failMode": {"enum": list(model.FAIL_MODES)},
        "maxWait": _duration(),
    }, required=("rate",))


def _placement_fields() -> dict[str, Schema]:
    """`clusters` (names) and/or a Kubernetes label `selector` over the clusters' labels."""
    expression = _object({
        "key": {"type": "string", "minLength": 1},
        "operator": {"enum": list(model.LABEL_OPERATORS)},
        "values": _strings(min_items=0),
    }, required=("key", "operator"))
    selector = _object({
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": expression},
    })
    return {"clusters": _strings(), "selector": selector}


def _placement() -> Schema:
    return _object(_placement_fields())


def _override() -> Schema:
    count = {"type": "integer", "minimum": 0}
    fields = _object({
        "quota": _quota(),
        "maxInflight": count,
        "maxWatches": count,
        "priorityLevel": {"type": "string", "minLength": 1},
        "shadow": {"type": "boolean"},
    })
    assert set(fields["properties"]) == set(model.OVERRIDE_FIELDS)
    return _object({**_placement_fields(), "rules": _strings(), "fields": fields}, required=("fields",))


def _rule() -> Schema:
    count = {"type": "integer", "minimum": 0}
    return _object({
        "name": {"type": "string", "pattern": NAME_PATTERN},
        **_selector(),
        "not": _object(_selector()),
        "quota": _quota(),
        "cost": _object({"list": _object({"base": {"type": "number", "minimum": 0},
                                          "perObjects": {"type": "number", "minimum": 1},
                                          "max": {"type": "number", "minimum": 1},
                                          "unmeasured": {"type": "integer", "minimum": 0}})}),
        "maxInflight": count,
        "maxWatches": count,
        "priorityLevel": {"type": "string", "minLength": 1},
        "shadow": {"type": "boolean"},
        "placement": _placement(),
    }, required=("name",))


def _spec() -> Schema:
    text = {"type": "string", "minLength": 1}
    subject = _object({"kind": {"enum": list(model.SUBJECT_KINDS)}, "name": text, "namespace": text},
                      required=("kind", "name"))
    quarantine = _object({"threshold": {"type": "integer", "minimum": 1}, "window": _duration(),
                          "ttl": _duration(), "rate": {"type": "string", "pattern": RATE_PATTERN},
                          "burst": {"type": "number", "minimum": 1}}, required=("threshold",))
    return _object({
        "subjects": {"type": "array", "items": subject, "minItems": 1},
        "namespaces": _strings(min_items=0),
        "rules": {"type": "array", "items": _rule(), "minItems": 1},
        "precedence": {"type": "integer", "minimum": 0},
        "quarantine": quarantine,
        "placement": _placement(),
        "overrides": {"type": "array", "items": _override()},
    }, required=("subjects", "rules"))


def json_schema() -> Schema:
    """The whole document, as a JSON Schema (draft 2020-12)."""
    labels = {"type": "object", "additionalProperties": {"type": "string"}}
    document = _object({
        "apiVersion": {"const": model.API_VERSION},
        "kind": {"const": model.KIND},
        "metadata": _object({"name": {"type": "string", "pattern": NAME_PATTERN}, "labels": labels,
                             "annotations": labels}, required=("name",)),
        "spec": _spec(),
    }, required=("apiVersion", "kind", "metadata", "spec"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": model.KIND, **document}


def _structural(node: Any) -> Any:
    """A JSON Schema made fit for a CRD's openAPIV3Schema: no $-keys, const as a one-value enum,
    no additionalProperties beside properties (the api-server prunes unknown fields instead), and
    the string-or-number durations as x-kubernetes-int-or-string."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items() if not k.startswith("$") and k != "title"}
    if "const" in out:
        out["enum"] = [out.pop("const")]
        out.setdefault("type", "string")
    if "properties" in out:
        out.pop("additionalProperties", None)
    if out.get("type") == ["string", "number"]:
        out = {"x-kubernetes-int-or-string": True, **{k: v for k, v in out.items()
                                                      if k not in ("type", "pattern", "minimum")}}
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def crd() -> Schema:
    """A CustomResourceDefinition of TenantPolicy (cluster-scoped: a tenant spans namespaces)."""
    group, _, version = model.API_VERSION.partition("/")
    openapi = _structural(json_schema())
    openapi["properties"]["metadata"] = {"type": "object"}  # the api-server owns metadata's schema
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"tenantpolicies.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"kind": model.KIND, "listKind": f"{model.KIND}List", "plural": "tenantpolicies",
                      "singular": "tenantpolicy", "shortNames": ["tp"]},
            "versions": [{"name": version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": openapi}}],
        },
    }
