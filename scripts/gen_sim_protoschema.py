"""Write chaos/sim/protoschema.py, the simulator's table of Kubernetes protobuf messages.

Run once per Kubernetes minor (the table is checked in; the sources are not):

    git -C <kubernetes/api> archive v0.32.9 | tar -x -C /tmp/k/api
    git -C <kubernetes/apimachinery> archive v0.32.9 pkg | tar -x -C /tmp/k/apimachinery
    git -C <kubernetes/kube-aggregator> archive v0.32.9 pkg/apis | tar -x -C /tmp/k/agg
    git -C <kubernetes/apiextensions-apiserver> archive v0.32.9 pkg/apis | tar -x -C /tmp/k/ext
    python scripts/gen_sim_protoschema.py /tmp/k > chaos/sim/protoschema.py

Field numbers, names and types come from each package's generated.proto; what the JSON shape needs
besides (Go pointer or value, omitempty, patch merge keys, `+optional`) from the Go struct tags of
the same package's types. Only the group versions a 1.32 api-server serves are read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PACKAGES = {
    # table prefix -> directory under the root
    "core.v1": "api/core/v1",
    "apps.v1": "api/apps/v1",
    "batch.v1": "api/batch/v1",
    "autoscaling.v1": "api/autoscaling/v1",
    "autoscaling.v2": "api/autoscaling/v2",
    "policy.v1": "api/policy/v1",
    "networking.v1": "api/networking/v1",
    "rbac.v1": "api/rbac/v1",
    "scheduling.v1": "api/scheduling/v1",
    "storage.v1": "api/storage/v1",
    "coordination.v1": "api/coordination/v1",
    "discovery.v1": "api/discovery/v1",
    "events.v1": "api/events/v1",
    "node.v1": "api/node/v1",
    "certificates.v1": "api/certificates/v1",
    "admissionregistration.v1": "api/admissionregistration/v1",
    "flowcontrol.v1": "api/flowcontrol/v1",
    "authentication.v1": "api/authentication/v1",
    "authorization.v1": "api/authorization/v1",
    "apiregistration.v1": "agg/pkg/apis/apiregistration/v1",
    "apiextensions.v1": "ext/pkg/apis/apiextensions/v1",
    "meta.v1": "apimachinery/pkg/apis/meta/v1",
    "runtime": "apimachinery/pkg/runtime",
    "resource": "apimachinery/pkg/api/resource",
    "intstr": "apimachinery/pkg/util/intstr",
}
PROTO_PACKAGES = {
    "k8s.io.apimachinery.pkg.apis.meta.v1": "meta.v1",
    "k8s.io.apimachinery.pkg.runtime": "runtime",
    "k8s.io.apimachinery.pkg.runtime.schema": "runtime.schema",
    "k8s.io.apimachinery.pkg.api.resource": "resource",
    "k8s.io.apimachinery.pkg.util.intstr": "intstr",
    "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1": "apiregistration.v1",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1": "apiextensions.v1",
}
SCALARS = {"string", "int32", "int64", "bool", "bytes", "double", "float", "uint32", "uint64"}
_FIELD = re.compile(r"^\s*(optional|repeated)\s+(\S+)\s+(\w+)\s*=\s*(\d+)")
_MAP = re.compile(r"^\s*map<\s*string\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+)")
_STRUCT = re.compile(r"^type (\w+) struct \{")
_TAG = re.compile(r"^\s*(\w+)\s+(\S+)\s+`(.*)`")
_EMBEDDED = re.compile(r"^\s*()(\*?[\w.]+)\s+`(.*)`")


def short(type_name: str, package: str) -> str:
    if type_name in SCALARS:
        return type_name
    if not type_name.startswith("."):
        return f"{package}.{type_name}"
    dotted = type_name[1:]
    prefix, _, name = dotted.rpartition(".")
    if prefix.startswith("k8s.io.api."):
        return f"{prefix[len('k8s.io.api.') :]}.{name}"
    return f"{PROTO_PACKAGES[prefix]}.{name}"


def _sentence(comment: list[str]) -> str:
    text = " ".join(line for line in comment if not line.startswith("+")).strip()
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
    return first[:240]


def parse_proto(text: str, package: str) -> dict[str, dict[str, object]]:
    messages: dict[str, dict[str, object]] = {}
    current: dict[str, object] | None = None
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comment.append(stripped[2:].strip())
            continue
        if stripped.startswith("message "):
            name = stripped.split()[1]
            current = {"doc": _sentence(comment), "fields": [], "hints": list(comment)}
            messages[f"{package}.{name}"] = current
        elif current is not None and (m := _MAP.match(line)):
            value, field, number = m.groups()
            current["fields"].append(  # type: ignore[attr-defined]
                [int(number), field, short(value, package), "m", "+optional" in comment, _sentence(comment)]
            )
        elif current is not None and (m := _FIELD.match(line)):
            label, type_name, field, number = m.groups()
            current["fields"].append(  # type: ignore[attr-defined]
                [int(number), field, short(type_name, package), "r" if label == "repeated" else "",
                 "+optional" in comment, _sentence(comment)]
            )  # fmt: skip
        elif stripped == "}":
            current = None
        comment = [] if not stripped.startswith("//") else comment
    return messages


def parse_go(directory: Path) -> dict[tuple[str, int], dict[str, object]]:
    """(struct, field number) -> pointer, omitempty, merge key, strategy, json name."""
    out: dict[tuple[str, int], dict[str, object]] = {}
    for path in sorted(directory.glob("*.go")):
        if path.name.endswith("_test.go") or path.name.startswith(("zz_", "generated")):
            continue
        struct = ""
        for line in path.read_text().splitlines():
            if m := _STRUCT.match(line):
                struct = m.group(1)
                continue
            if line.startswith("}"):
                struct = ""
            m = _TAG.match(line) or _EMBEDDED.match(line)
            if not struct or not m or "protobuf:" not in m.group(3):
                continue
            tags = dict(re.findall(r'(\w+):"([^"]*)"', m.group(3)))
            proto = tags.get("protobuf", "").split(",")
            if len(proto) < 2 or not proto[1].isdigit():
                continue
            json_tag = tags.get("json", "").split(",")
            info: dict[str, object] = {
                "pointer": m.group(2).startswith("*"),
                "omitempty": "omitempty" in json_tag[1:],
                "json": json_tag[0] if "inline" not in json_tag else "",
                "mergeKey": tags.get("patchMergeKey", ""),
                "strategy": tags.get("patchStrategy", ""),
            }
            if "json" not in tags:
                del info["json"]
            out[(struct, int(proto[1]))] = info
    return out


def build(root: Path) -> dict[str, object]:
    table: dict[str, object] = {}
    for package, directory in PACKAGES.items():
        proto = (root / directory / "generated.proto").read_text()
        go = parse_go(root / directory)
        for name, message in parse_proto(proto, package).items():
            struct = name.rsplit(".", 1)[1]
            fields = []
            for number, field, type_name, label, optional, doc in message["fields"]:  # type: ignore[attr-defined]
                info = go.get((struct, number), {})
                flags = ("p" if info.get("pointer") else "") + ("o" if info.get("omitempty") else "")
                flags += "" if optional or info.get("omitempty") else "q"
                extra = ""
                if info.get("mergeKey"):
                    extra = f"{info['strategy']}:{info['mergeKey']}"
                elif info.get("strategy"):
                    extra = f"{info['strategy']}:"
                json_name = str(info["json"]) if "json" in info and info["json"] != "-" else field
                fields.append((number, json_name, type_name, label, flags, extra, doc))
            table[name] = (message["doc"], tuple(sorted(fields)))
    return table


HEADER = '''"""Generated by scripts/gen_sim_protoschema.py from the Kubernetes v1.32 generated.proto files and
Go struct tags; do not edit. The one data module exempt from the size habit: it is a table.

MESSAGES maps "group.version.Kind" (core.v1.Pod, meta.v1.ObjectMeta, ...) to (description, fields);
each field is (number, json name, type, label, flags, patch, description): json name "" is a message
inlined in its parent's JSON; type is a protobuf scalar or another message's key; label "" (optional),
"r" (repeated) or "m" (map from string); flags hold "p" (Go pointer: present even when zero),
"o" (omitempty), "q" (required in OpenAPI); patch is "strategy:mergeKey" from the patch tags.
"""

# ruff: noqa: E501, RUF001

MESSAGES: dict[str, tuple[str, tuple[tuple[int, str, str, str, str, str, str], ...]]] = {
'''


def main() -> int:
    table = build(Path(sys.argv[1]))
    out = [HEADER]
    for name in sorted(table):
        doc, fields = table[name]  # type: ignore[misc]
        out.append(f"    {name!r}: ({doc!r}, (\n")
        out.extend(f"        {f!r},\n" for f in fields)
        out.append("    )),\n")
    out.append("}\n")
    sys.stdout.write("".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
