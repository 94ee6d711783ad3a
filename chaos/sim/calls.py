"""One authenticated, authorized API call as the handlers see it, and the body and answer helpers
they share.

It must never authorize or authenticate: by the time a `Call` exists both have happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from chaos.sim import protobuf, protojson, schema
from chaos.sim.authn import User
from chaos.sim.kinds import Kind
from chaos.sim.paths import Target
from chaos.sim.simulation import Simulation
from chaos.sim.status import StatusError, bad_request

Obj = dict[str, Any]


@dataclass(frozen=True)
class Call:
    request: web.Request
    sim: Simulation
    kind: Kind
    target: Target
    user: User

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    @property
    def namespace(self) -> str:
        return self.target.namespace if self.kind.namespaced else ""

    @property
    def dry_run(self) -> bool:
        return "All" in self.request.query.getall("dryRun", [])

    def field_manager(self, default: str = "") -> str:
        agent = self.request.headers.get("User-Agent", "unknown").split("/")[0]
        return self.query.get("fieldManager") or default or agent


def respond(body: Any, status: int = 200, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer spelled as Go's encoder spells it: compact, UTF-8, one trailing newline."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n"
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


async def read_object(request: web.Request) -> Any:
    raw = await request.read()
    try:
        if request.content_type == protobuf.CONTENT_TYPE:
            return _protobuf_object(raw)
        if "yaml" in request.content_type:
            return yaml.safe_load(raw) or {}
        return json.loads(raw or b"null")
    except protobuf.ProtobufError as e:
        raise bad_request(f"the object provided is unrecognized: {e}") from e
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(
            f"the object provided is unrecognized: couldn't get version/kind; json parse "
            f"error: {str(e).splitlines()[0]}"
        ) from e


def _protobuf_object(raw: bytes) -> Any:
    api_version, kind, _ = protobuf.unwrap(raw)
    if protojson.message_for(api_version, kind) is None:
        raise StatusError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml",
        )
    return protojson.decode_object(raw)


def check_fields(call: Call, obj: Obj) -> dict[str, str]:
    """Apply fieldValidation: Strict rejects unknown fields, Warn (the default) answers a Warning."""
    unknown = schema.unknown_fields(call.kind, obj)
    directive = call.query.get("fieldValidation", "Warn")
    if directive not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f"fieldValidation must be one of Strict, Warn, Ignore, not {directive!r}")
    if not unknown or directive == "Ignore":
        return {}
    if directive == "Strict":
        listed = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise StatusError(400, f"strict decoding error: {listed}")
    return {"Warning": ", ".join(f'299 - "unknown field \\"{f}\\""' for f in unknown)}


def check_identity(call: Call, obj: Any) -> Obj:
    """The body must be an object of this kind, named as the URL names it."""
    if not isinstance(obj, dict):
        raise bad_request("the object provided is unrecognized: expected a JSON object")
    api_version, kind_name = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != call.kind.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({call.kind.api_version})"
        )
    if kind_name and kind_name != call.kind.kind:
        raise bad_request(
            f"the kind in the data ({kind_name}) does not match the expected kind ({call.kind.kind})"
        )
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if call.kind.namespaced and meta.get("namespace") and meta["namespace"] != call.target.namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if call.target.name and meta.get("name") and meta["name"] != call.target.name:
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({call.target.name})"
        )
    return obj
