"""Which cluster a request is for: the path prefix `/clusters/{name}/...`, else the Host header, else
the TLS server name (SNI), else the default cluster.

The prefix is stripped from the request target before anything else reads it, so a kubeconfig can
point at `https://guard/clusters/prod-eu` and the api-server still sees `/api/v1/...`. A prefix
naming no cluster is a 404 Status naming it; a host naming no cluster falls through to the default.
Pure: strings in, a `Route` out; no framework, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from guard.kube.errors import GuardError, Status, StatusDetails, status_body

PREFIX = "/clusters/"
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
"""What a cluster name looks like (guard.settings checks names with the same pattern)."""
_NAME_LENGTH = 63


class UnknownCluster(GuardError):
    """`/clusters/{name}/...` with a name guard does not serve."""

    code = 404
    reason = "NotFound"

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= _NAME_LENGTH and NAME.fullmatch(name) else ""
        super().__init__(f'cluster "{shown}" is not served here' if shown else "no such cluster")
        self.name = shown

    def status(self) -> Status:
        details: StatusDetails | None = {"name": self.name, "kind": "clusters"} if self.name else None
        return status_body(self.code, self.reason, self.message, details=details)


@dataclass(frozen=True)
class Route:
    """The cluster that serves a request, and its target once the prefix is gone (None: unchanged)."""

    cluster: str
    target: str | None = None


class Router:
    """Built once per settings generation from every cluster's name and host names."""

    def __init__(self, names: Iterable[str], *, default: str, hosts: Mapping[str, str] | None = None) -> None:
        self.names = frozenset(names)
        if default not in self.names:
            raise ValueError(f"default cluster {default!r} is not one of the clusters")
        self.default = Route(default)
        self._routes = {name: Route(name) for name in self.names}
        self.hosts = {normal_host(h): self._routes[c] for h, c in (hosts or {}).items()}

    def route(self, target: str, host: str | None = None, server_name: str | None = None) -> Route:
        """The route of a request to `target` (path and query as sent) with this Host header and
        SNI name. Raises UnknownCluster for a prefix naming no cluster."""
        if target.startswith(PREFIX):
            return self._by_prefix(target)
        if self.hosts:
            found = self.hosts.get(normal_host(host)) if host else None
            if found is None and server_name:
                found = self.hosts.get(normal_host(server_name))
            if found is not None:
                return found
        return self.default

    def _by_prefix(self, target: str) -> Route:
        rest = target[len(PREFIX):]
        end = len(rest)
        for mark in ("/", "?"):
            at = rest.find(mark)
            if at != -1 and at < end:
                end = at
        name, tail = rest[:end], rest[end:]
        if name not in self.names:
            raise UnknownCluster(name)
        if not tail.startswith("/"):
            tail = "/" + tail  # `/clusters/x` and `/clusters/x?q` are the root of cluster x
        return Route(name, tail)


def normal_host(host: str | None) -> str:
    """A Host header or server name as compared: lower case, no port, no trailing dot, no brackets."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")
