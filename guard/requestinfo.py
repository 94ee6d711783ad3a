"""Classify a request the way the api-server's RequestInfoFactory does.

Pure: method + path + query in, `RequestInfo` out. No I/O, no aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestInfo:
    """What a request asks for, with the api-server's semantics.

    verb is the Kubernetes verb: get, list, watch, create, update, patch, delete,
    deletecollection, proxy, connect (exec/attach/portforward) for resource requests; the
    lower-cased HTTP method for non-resource requests.
    """

    is_resource_request: bool
    verb: str
    path: str
    api_prefix: str = ""  # "api" or "apis"
    api_group: str = ""  # "" for the core group
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    # Query details the admission step prices requests by.
    limit: int = 0  # ?limit=, 0 when absent
    resource_version: str = ""
    label_selector: str = ""
    field_selector: str = ""
    timeout_seconds: int = 0
    dry_run: bool = False

    @property
    def is_long_running(self) -> bool:
        """Watches, log follows, exec/attach/port-forward: they hold a connection, not a rate."""
        return self.verb in {"watch", "connect", "proxy"} or (
            self.subresource == "log" and self.verb == "get"
        )

    @property
    def is_readonly(self) -> bool:
        return self.verb in {"get", "list", "watch"} or (
            not self.is_resource_request and self.verb in {"get", "head", "options"}
        )
