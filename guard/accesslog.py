"""The access log: one JSON object per line per request (time, user, verb, resource, status, bytes,
latency).

Fields are built from the Identity and RequestInfo only, so no header — and never a token or a
certificate — can reach the log. Writing is a buffered append; it must never block on a slow disk
longer than one write call.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from guard.identity import Identity
from guard.requestinfo import RequestInfo


@dataclass(frozen=True)
class AccessRecord:
    """What one line says. `latency` is seconds from request to last byte."""

    identity: Identity | None
    info: RequestInfo | None
    method: str
    status: int
    bytes: int
    latency: float
    cluster: str
    remote: str
    decision: str = ""


class AccessLog:
    """Appends JSON lines to a file, or to standard output when no path is given."""

    def __init__(self, path: Path | None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._own = path is not None and enabled
        self._out: TextIO = path.open("a", buffering=1) if path is not None and enabled else sys.stdout

    def write(self, record: AccessRecord) -> None:
        if not self.enabled:
            return
        self._out.write(json.dumps(line(record), separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._own:
            self._out.close()
        else:
            self._out.flush()


def line(r: AccessRecord) -> dict[str, object]:
    info, who = r.info, r.identity
    out: dict[str, object] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
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
    if info and info.is_resource_request:
        out.update(group=info.api_group, resource=info.resource, subresource=info.subresource,
                   namespace=info.namespace, name=info.name)
    if r.decision:
        out["decision"] = r.decision
    return out
