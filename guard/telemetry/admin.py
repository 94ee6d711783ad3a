"""The admin listener: `/metrics`, `/healthz`, `/readyz` (an api-server answers), `/debug/guard/config`
(secrets redacted), `policies` (tenants and rules with their opaque ids) and whatever other areas
register under `/debug/guard/` through `AdminPages` (`buckets`, `queues`). Under `--workers N`, worker
0's app also holds the `Siblings` (`serve_siblings`): its /metrics answers for every worker, and
`/debug/guard/<page>?worker=i` shows worker i's page.

The debug pages answer only the clients `admin.debug` allows (loopback ones by default: they name
users, namespaces and tenants); /metrics and the probes answer whoever reaches the port. It serves
operators, never API clients, and must never show a token, a key or a password, however given.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guard.admission.controller import AdmissionController
from guard.admission.rules import CompiledRule, PolicySet
from guard.kube.errors import status_body
from guard.settings import Settings
from guard.settings.model import DebugAccess
from guard.telemetry.metrics import GuardMetrics
from guard.telemetry.siblings import Siblings

DebugSource = Callable[[], Any | Awaitable[Any]]
READY_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
SECRET_KEY = re.compile(r"token|passw|secret|credential|(^|_)key$", re.IGNORECASE)
"""Settings fields named like a secret (`token`, `password`, `secret`, `*_key`; never a `*file`)."""
SECRET_PARAMETER = re.compile(r"pass|pwd|token|secret|key|auth|cred|sig", re.IGNORECASE)
"""URL query parameters named like a secret (redis-py reads `?password=` and `?username=` too)."""
REDACTED = "<redacted>"
SIBLINGS = web.AppKey("siblings", Siblings)


class AdminPages:
    """Registry of debug pages: `add("buckets", fn)` serves `fn()` as JSON at /debug/guard/buckets."""

    def __init__(self) -> None:
        self.pages: dict[str, DebugSource] = {}

    def add(self, name: str, source: DebugSource) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"debug page name {name!r} must be lower-case letters, digits and dashes")
        self.pages[name] = source


def build_admin_app(metrics: GuardMetrics, pages: AdminPages, settings: Callable[[], Settings],
                    ready: Callable[[], Awaitable[bool]], *,
                    debug_access: Callable[[], DebugAccess] = lambda: "loopback") -> web.Application:
    """/metrics and the probes for everyone; the debug pages for whom `debug_access()` allows
    (`admin.debug` of the settings in force)."""
    app = web.Application()

    async def metrics_page(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        siblings = request.app.get(SIBLINGS)
        if siblings is not None:
            body = await siblings.exposition(body)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        ok = await ready()
        return web.Response(text="ok" if ok else "no api-server endpoint answers", status=200 if ok else 503)

    async def debug(request: web.Request) -> web.Response:
        refusal = _debug_refusal(debug_access(), request.remote)
        if refusal is not None:
            return refusal
        worker = request.query.get("worker")
        siblings = request.app.get(SIBLINGS)
        if worker is not None and worker != str(siblings.index if siblings else 0):
            return await _sibling_page(siblings, worker, request.path)
        name = request.match_info["name"]
        if name == "config":
            return _json(config_view(settings()))
        source = pages.pages.get(name)
        if source is None:
            return _json({"error": f"no debug page {name!r}", "pages": ["config", *sorted(pages.pages)]}, 404)
        value = source()
        if isinstance(value, Awaitable):
            value = await value
        return _json(value)

    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/debug/guard/{name}", debug)
    return app


def _debug_refusal(access: DebugAccess, remote: str | None) -> web.Response | None:
    """A 403 (404 with `debug: off`) Status for a client that `access` does not let read the debug
    pages; None for one it does. A unix-socket peer (a sibling worker, its socket in a private
    directory) counts as local."""
    if access == "open" or (access == "loopback" and _is_local(remote)):
        return None
    if access == "off":
        return _json(status_body(404, "NotFound", "debug pages are off (admin.debug)"), 404)
    return _json(status_body(403, "Forbidden", "debug pages answer loopback clients only (admin.debug)"),
                 403)


def _is_local(remote: str | None) -> bool:
    if not remote:
        return True  # a unix socket
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def serve_siblings(app: web.Application, siblings: Siblings) -> None:
    """Make `app` answer for every worker: merged /metrics, `?worker=i` on debug pages."""
    app[SIBLINGS] = siblings

    async def sessions(_app: web.Application) -> AsyncIterator[None]:
        await siblings.open()
        yield
        await siblings.close()

    app.cleanup_ctx.append(sessions)


async def _sibling_page(siblings: Siblings | None, worker: str, path: str) -> web.Response:
    """Worker `worker`'s answer at `path`, relayed as it came."""
    index = int(worker) if worker.isdigit() else -1
    if siblings is None or index not in siblings.sockets:
        known = [0] if siblings is None else sorted([siblings.index, *siblings.sockets])
        return _json({"error": f"no worker {worker!r}", "workers": known}, 404)
    answer = await siblings.get(index, path)
    if answer is None:
        return _json({"error": f"worker {index} did not answer"}, 502)
    status, body = answer
    return web.Response(body=body, status=status, content_type="application/json")


async def any_endpoint_ready(sessions: list[tuple[aiohttp.ClientSession, str]],
                             headers: dict[str, str]) -> bool:
    """True when one api-server endpoint answers its /readyz (any HTTP answer below 500 counts:
    an api-server that refuses guard's credential is still reachable)."""
    for session, url in sessions:
        try:
            async with session.get(url + "/readyz", headers=headers, timeout=READY_TIMEOUT) as r:
                if r.status < 500:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            continue
    return False


def config_view(settings: Settings) -> Any:
    """The settings as JSON, with every secret replaced by "<redacted>"."""
    return _redact(_plain(settings))


def policies_view(admission: object) -> Any:
    """The policy set in force: every tenant with its rules, limits and the opaque ids that
    responses carry (`X-Guard-Tenant-Id`, `X-Guard-Rule-Id`), so an operator can map one to the other."""
    if not isinstance(admission, AdmissionController):
        return {"admission": "off", "tenants": []}
    policies = admission.policies
    view = {"admission": "on", "shadow": admission.settings.shadow, "tenants": _tenants_view(policies),
            "catchAll": _rule_view(policies.catch_all)}
    if policies.placed:  # placement in use: `tenants` is the bundle as written, these what each enforces
        view["clusters"] = {name: _tenants_view(own) for name, own in sorted(policies.placed.items())}
    return view


def _tenants_view(policies: PolicySet) -> list[dict[str, Any]]:
    return [{"name": t.name, "id": t.rules[0].tenant_id if t.rules else "",
             "rules": [_rule_view(r) for r in t.rules]} for t in policies.tenants]


def _rule_view(rule: CompiledRule) -> dict[str, Any]:
    quota = rule.quota
    return {
        "name": rule.name, "id": rule.rule_id, "tenant": rule.tenant, "priorityLevel": rule.level,
        "exempt": rule.exempt, "shadow": rule.shadow,
        "quota": None if quota is None else {"rate": quota.rate, "burst": quota.burst, "scope": quota.scope},
        "maxInflight": rule.max_inflight, "maxWatches": rule.max_watches,
        "listCost": _plain(rule.list_cost), "bucket": rule.key_base,
    }


def _plain(value: Any) -> Any:
    """`value` as JSON-ready data; a dataclass field declared `repr=False` (a secret) is redacted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) if f.repr or getattr(value, f.name) is None
                else REDACTED for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _redact(value: Any, key: str = "") -> Any:
    """Every secret replaced: fields named like one (never a file's path), the user info and the
    secret-named query parameters of every URL."""
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str) and SECRET_KEY.search(key) and not key.lower().endswith(("file", "dir")):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """`url` without its password or user (`<redacted>@host`) and with the value of every query
    parameter named like a secret (`?password=`, `token`, `secret`, `key`, `auth`, ...) redacted."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    except ValueError:
        return REDACTED  # not a URL Python can read: show nothing of it
    query = "&".join(_redact_parameter(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_parameter(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}={REDACTED}" if equals and SECRET_PARAMETER.search(unquote(name)) else pair


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(value, indent=2, default=str), status=status,
                        content_type="application/json")
