"""The access log: one JSON object per line per request (time, user, verb, resource, status, bytes,
latency, and the admission decision: tenant, rule, decision, retry_after).

Fields are built from the Identity and RequestInfo only, so no header — and never a token or a
certificate — can reach the log. Lines written during one event-loop iteration leave in one write
call at the end of it (one syscall for many requests under load, yet on disk before the client can
ask again); it must never block on a slow disk longer than that one write call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TextIO

from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo


class AccessRecord(NamedTuple):
    """What one line says. `latency` is seconds from request to last byte; `decision` is the
    admission outcome, `retry_after` the Retry-After seconds the client was told (0: none).

    An immutable NamedTuple rather than a frozen dataclass: one is built per request, and a
    tuple is built in a third of the time."""

    identity: Identity | None
    info: RequestInfo | None
    method: str
    status: int
    bytes: int
    latency: float
    cluster: str
    remote: str
    decision: str = ""
    tenant: str = ""
    rule: str = ""
    retry_after: int = 0
    protocol: str = ""
    """How the client spoke: HTTP/1.1, HTTP/1.0 or HTTP/2 ("": not known, the field is left out)."""


class AccessLog:
    """Appends JSON lines to a file, or to standard output when no path is given.

    `quiet_tenants`: tenants whose requests are not logged (a chatty system tenant, say)."""

    def __init__(self, path: Path | None, *, enabled: bool = True,
                 quiet_tenants: frozenset[str] = frozenset()) -> None:
        self.enabled = enabled
        self.quiet_tenants = quiet_tenants
        self._own = path is not None and enabled
        self._out: TextIO = path.open("a") if path is not None and enabled else sys.stdout
        self._pending: list[str] = []

    def write(self, record: AccessRecord) -> None:
        if not self.enabled or (self.quiet_tenants and record.tenant in self.quiet_tenants):
            return
        self._pending.append(encode(record))
        if len(self._pending) > 1:
            return  # a flush is already scheduled for this loop iteration
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a script or a test): write at once
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        if not self._out.closed:
            self._out.write(text)
            self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._own:
            self._out.close()


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_GROUPS_KEPT = 1024
_EMPTY = '""'
_groups_seen: dict[tuple[str, ...], str] = {}
_stamp: tuple[int, str] = (0, "")


def _now() -> str:
    """The time field, formatted once per second rather than once per line."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _stamp[1]


_PARTS_KEPT = 1024
_parts_seen: dict[tuple[int, int, str], tuple[Identity | None, RequestInfo | None, str, str]] = {}
"""The fixed parts of a line per (caller, request, method): callers repeat the same requests, and the
pipeline hands the same Identity (its authentication cache) and RequestInfo (its classification
cache) objects each time. Keyed by the objects' ids and checked by identity, so a reused id can
never pick another caller's text."""


def encode(r: AccessRecord) -> str:
    """The line for `r`, byte for byte what `json` makes of `line(r)`, without building the dict
    or running the generic encoder: each string goes through the C quoting function once, and the
    parts fixed by the caller and the request once per (caller, request)."""
    head, resource = _parts(r.identity, r.info, r.method)
    text = (
        f'{{"time":"{_now()}",{head}"status":{r.status},"bytes":{r.bytes},'
        f'"latency":{round(r.latency, 6)!r},"cluster":{_quote(r.cluster)},'
        f'"remote":{_quote(r.remote)}'
    )
    if r.protocol:
        text += f',"protocol":"{r.protocol}"'
    text += resource
    if r.decision:
        text += f',"decision":{_quote(r.decision)},"tenant":{_quote(r.tenant)},"rule":{_quote(r.rule)}'
    if r.retry_after:
        text += f',"retry_after":{r.retry_after}'
    return text + "}"


def _parts(who: Identity | None, info: RequestInfo | None, method: str) -> tuple[str, str]:
    """(user to path fields with their commas, the resource fields or "") for one caller and request."""
    key = (id(who), id(info), method)
    found = _parts_seen.get(key)
    if found is not None and found[0] is who and found[1] is info:
        return found[2], found[3]
    head = (
        f'"user":{_quote(who.user) if who else _EMPTY},"groups":{_groups(who.groups) if who else "[]"},'
        f'"method":{_quote(method)},"verb":{_quote(info.verb) if info else _EMPTY},'
        f'"path":{_quote(info.path) if info else _EMPTY},'
    )
    resource = ""
    if info and info.is_resource_request:
        resource = (
            f',"group":{_quote(info.api_group)},"resource":{_quote(info.resource)},'
            f'"subresource":{_quote(info.subresource)},"namespace":{_quote(info.namespace)},'
            f'"name":{_quote(info.name)}'
        )
    if len(_parts_seen) >= _PARTS_KEPT:
        _parts_seen.clear()
    _parts_seen[key] = (who, info, head, resource)
    return head, resource


def _groups(groups: tuple[str, ...]) -> str:
    """A caller's groups as a JSON array, encoded once per distinct set (callers are few)."""
    text = _groups_seen.get(groups)
    if text is None:
        if len(_groups_seen) >= _GROUPS_KEPT:
            _groups_seen.clear()
        text = _groups_seen[groups] = "[" + ",".join(map(_quote, groups)) + "]"
    return text


def line(r: AccessRecord) -> dict[str, object]:
    info, who = r.info, r.identity
    out: dict[str, object] = {
        "time": _now(),
        "user": who.user if who else "",
        "groups": list(who.groups) if who else [],
        "method": r.method,
        "verb": info.verb if info else "",
        "path": info.path if info else "",
        "status": r.status,
        "bytes": r.bytes,
        "latency": round(r.latency, 6),
        "cluster": r.cluster,
        "remote": r.remote,
    }
    if r.protocol:
        out["protocol"] = r.protocol
    if info and info.is_resource_request:
        out.update(group=info.api_group, resource=info.resource, subresource=info.subresource,
                   namespace=info.namespace, name=info.name)
    if r.decision:
        out.update(decision=r.decision, tenant=r.tenant, rule=r.rule)
    if r.retry_after:
        out["retry_after"] = r.retry_after
    return out
