"""The filter chain in front of every handler: authenticate → impersonate → record → authorize.

Like the api-server: a bad or missing credential is 401 (unless anonymous is on), `Impersonate-*`
headers are honoured only when the caller may `impersonate` each of them, and a request RBAC denies
is a 403 `Status` naming user, verb, resource and scope. It must never log or echo a credential.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDictProxy

from chaos.sim.authn import ANONYMOUS, SA_PREFIX, User, service_account_groups, with_authenticated
from chaos.sim.paths import Target
from chaos.sim.rbac import Attributes
from chaos.sim.selectors import SelectorError, parse_fields
from chaos.sim.simulation import Simulation
from chaos.sim.status import StatusError, bad_request

CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")
STATE_PATH = "/debug/sim/state"


def authenticate(sim: Simulation, request: web.Request) -> User:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        user = sim.authenticator.from_token(header[7:].strip())
    else:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        user = sim.authenticator.from_cert(peercert) or sim.authenticator.anonymous_user()
    if user is None:
        raise StatusError(401, "Unauthorized")
    return user


def _impersonation_checks(
    name: str, groups: list[str], uid: str, extra: dict[str, list[str]]
) -> list[tuple[str, str, str, str, str]]:
    """(group, resource, subresource, namespace, name) the caller must be allowed to impersonate."""
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        _, _, namespace, sa_name = name.split(":")
        checks = [("", "serviceaccounts", "", namespace, sa_name)]
    else:
        checks = [("", "users", "", "", name)]
    checks += [("", "groups", "", "", group) for group in groups]
    if uid:
        checks.append(("authentication.k8s.io", "uids", "", "", uid))
    checks += [("authentication.k8s.io", "userextras", key, "", v) for key, vs in extra.items() for v in vs]
    return checks


def impersonate(sim: Simulation, caller: User, headers: CIMultiDictProxy[str]) -> User:
    name = headers.get("Impersonate-User", "")
    groups = list(headers.getall("Impersonate-Group", []))
    uid = headers.get("Impersonate-Uid", "")
    extra: dict[str, list[str]] = {}
    for key in headers:
        if key.lower().startswith("impersonate-extra-"):
            extra[unquote(key[len("impersonate-extra-") :]).lower()] = list(headers.getall(key))
    if not (name or groups or uid or extra):
        return caller
    if not name:
        raise bad_request("impersonating groups, a uid or extra fields requires impersonating a user")
    for group, resource, sub, namespace, target in _impersonation_checks(name, groups, uid, extra):
        attrs = Attributes(caller, "impersonate", True, group, resource, sub, namespace, target)
        if not sim.authorizer.authorize(attrs).allowed:
            raise StatusError(
                403,
                attrs.forbidden_message(),
                reason="Forbidden",
                details={"name": target, "group": group, "kind": resource},
            )
    if not groups and name.startswith(SA_PREFIX) and name.count(":") == 3:
        impersonated = service_account_groups(name.split(":")[2])
    else:
        impersonated = tuple(groups) if name == ANONYMOUS else with_authenticated(tuple(groups))
    return User(name, uid, impersonated, {k: tuple(v) for k, v in extra.items()})


def _name_of(target: Target, query: dict[str, str]) -> str:
    """A list or watch restricted to one name by fieldSelector is authorized as that name."""
    if target.name or target.verb not in ("list", "watch"):
        return target.name
    try:
        fields = parse_fields(query.get("fieldSelector"))
    except SelectorError:
        return ""
    names = [f.value for f in fields if f.key == "metadata.name" and f.op == "="]
    return names[0] if len(names) == 1 else ""


def attributes(user: User, target: Target, query: dict[str, str]) -> Attributes:
    if not target.resource_request:
        return Attributes(user, target.verb, False, path=target.path)
    verb = "create" if target.subresource in CONNECT_SUBRESOURCES else target.verb
    return Attributes(
        user,
        verb,
        True,
        target.group,
        target.resource,
        target.subresource,
        target.namespace,
        _name_of(target, query),
    )


def authorize(sim: Simulation, attrs: Attributes) -> None:
    if sim.authorizer.authorize(attrs).allowed:
        return
    details = (
        {"name": attrs.name, "group": attrs.group, "kind": attrs.resource} if attrs.resource_request else None
    )
    raise StatusError(403, attrs.forbidden_message(), reason="Forbidden", details=details)


def admit(sim: Simulation, request: web.Request, target: Target) -> User:
    """The effective user of an allowed request; raises the 401/403 Status otherwise."""
    try:
        caller = authenticate(sim, request)
    except StatusError:
        sim.recorder.rejected()
        raise
    try:
        user = impersonate(sim, caller, request.headers)
    except StatusError:
        sim.recorder.request(caller.name, target.verb)
        raise
    if target.path != STATE_PATH:
        sim.recorder.request(user.name, target.verb, impersonator=caller.name if user is not caller else None)
    authorize(sim, attributes(user, target, dict(request.query)))
    return user
