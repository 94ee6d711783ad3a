"""The subresources that are not plain object views: pod log and exec (handed to
`chaos.sim.streams` when it exists) and service-account tokens (signed by `chaos.sim.oidc`).

It must never authorize (the chain has, with verb get on pods/log and create on pods/exec) and never
print a token it issues anywhere but the response.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from chaos.sim.calls import Call, read_object, respond
from chaos.sim.simulation import optional_module
from chaos.sim.status import StatusError, bad_request


def _container(call: Call, pod: dict[str, Any]) -> str:
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    wanted = call.query.get("container") or (names[0] if len(names) == 1 else "")
    if not wanted:
        raise bad_request(
            f"a container name must be specified for pod {pod['metadata']['name']}, choose "
            f"one of: [{' '.join(names)}]"
        )
    if wanted not in names:
        raise bad_request(f"container {wanted} is not valid for pod {pod['metadata']['name']}")
    return wanted


async def log(call: Call) -> web.StreamResponse:
    pod = call.sim.store.get(call.kind, call.namespace, call.target.name)
    streams = optional_module("chaos.sim.streams")
    follow = call.query.get("follow", "").lower() == "true"
    if streams is not None:
        response: web.StreamResponse = await streams.serve_log(call.request, pod, follow, call.sim)
        return response
    container = _container(call, pod)
    return web.Response(text=f"{pod['metadata']['name']}/{container}: started\n", content_type="text/plain")


async def exec_(call: Call) -> web.StreamResponse:
    pod = call.sim.store.get(call.kind, call.namespace, call.target.name)
    streams = optional_module("chaos.sim.streams")
    if streams is None:
        raise StatusError(400, "exec is not available in this simulator build")
    commands = list(call.query.getall("command", []))
    response: web.StreamResponse = await streams.serve_exec(call.request, pod, commands, call.sim)
    return response


async def token(call: Call) -> web.Response:
    sa = call.sim.store.get(call.kind, call.namespace, call.target.name)
    if call.sim.issuer is None:
        raise StatusError(404, "the server could not find the requested resource", reason="NotFound")
    body = await read_object(call.request) or {}
    spec = (body.get("spec") or {}) if isinstance(body, dict) else {}
    seconds = int(spec.get("expirationSeconds") or 3600)
    audiences = spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]
    issued = call.sim.issuer.issue(
        call.namespace,
        call.target.name,
        uid=sa["metadata"]["uid"],
        audience=str(audiences[0]),
        expires_in=seconds,
    )
    expires = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return respond(
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": call.target.name, "namespace": call.namespace},
            "spec": {"audiences": audiences, "expirationSeconds": seconds},
            "status": {"token": issued, "expirationTimestamp": expires},
        },
        201,
    )
