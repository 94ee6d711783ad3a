"""The subresources that are not plain object views: pod log, exec and attach (handed to
`chaos.sim.streams`), port-forward (`chaos.sim.portforward`), eviction and binding, and
service-account tokens (signed by `chaos.sim.oidc`).

It must never authorize (the chain has, with verb get on pods/log and create on pods/exec) and never
print a token it issues anywhere but the response.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from chaos.sim import portforward
from chaos.sim.calls import Call, read_object, respond
from chaos.sim.simulation import optional_module
from chaos.sim.status import StatusError, bad_request, success_body


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


async def attach(call: Call) -> web.StreamResponse:
    pod = call.sim.store.get(call.kind, call.namespace, call.target.name)
    return await streams_module().serve_attach(call.request, pod, call.sim)  # type: ignore[no-any-return]


async def portforward_(call: Call) -> web.StreamResponse:
    pod = call.sim.store.get(call.kind, call.namespace, call.target.name)
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    web_server = next((c for c in containers if "nginx" in str(c.get("image", ""))), containers[0])
    files = streams_module().container_files(call.sim, pod, str(web_server.get("name", "")))
    return await portforward.serve(call.request, pod, spdy_module(), files)


async def eviction(call: Call) -> web.Response:
    """policy/v1 Eviction: the pod is deleted (no disruption budget stands in the way here)."""
    call.sim.store.get(call.kind, call.namespace, call.target.name)
    await read_object(call.request)
    if not call.dry_run:
        call.sim.store.delete(call.kind, call.namespace, call.target.name)
    return respond(success_body(), 201)


async def binding(call: Call) -> web.Response:
    """A scheduler's Binding: the pod is placed on the target node."""
    body = await read_object(call.request) or {}
    node = ((body.get("target") or {}) if isinstance(body, dict) else {}).get("name", "")
    pod = call.sim.store.get(call.kind, call.namespace, call.target.name)
    spec = {**pod.get("spec", {}), "nodeName": node}
    call.sim.store.update(call.kind, call.namespace, call.target.name, {**pod, "spec": spec})
    return respond(success_body(), 201)


def streams_module() -> Any:
    streams = optional_module("chaos.sim.streams")
    if streams is None:
        raise StatusError(400, "streams are not available in this simulator build")
    return streams


def spdy_module() -> Any:
    spdy = optional_module("chaos.sim.spdy")
    return None if spdy is None else spdy.serve


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
