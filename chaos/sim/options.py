"""Every knob of the simulated api-server, as one frozen value built from the command line.

The overload defaults are the api-server's (400 read-only / 200 mutating in flight) scaled down
so that a laptop-sized flood can reach them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 6443
    replicas: int = 1
    """Number of api-server endpoints on consecutive ports (port, port+1, ...) sharing one store."""
    tls: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    """Serving certificate; generated (self-signed, SANs 127.0.0.1/localhost) when tls and absent."""
    token_file: Path | None = None
    """Static tokens in the api-server's format: token,user,uid,"group1,group2"."""
    client_ca: Path | None = None
    """CA for client-certificate users (CN = user, O = groups)."""
    anonymous: bool = False
    bootstrap: Path | None = None
    """YAML of RBAC objects; default: cluster-admin bound to group system:masters."""
    system_pods: bool = False
    """Run kube-system's workloads (CoreDNS, kube-proxy, static control-plane pods), as a fresh cluster
    does; off by default so that pod counts are the seeded ones."""
    seed_objects: int = 0
    """Pods pre-created, spread over namespaces seed-0..seed-9."""
    seed_object_bytes: int = 2048
    """Approximate JSON size of each seeded pod (padding in an annotation)."""

    # Overload model, per replica.
    max_readonly_inflight: int = 40
    """Like --max-requests-inflight (400 on a real api-server); watches are not counted."""
    max_mutating_inflight: int = 20
    """Like --max-mutating-requests-inflight (200 on a real api-server)."""
    base_service_ms: float = 2.0
    """Service time of a request on an idle replica."""
    per_object_service_us: float = 20.0
    """Extra service time per object a LIST returns."""
    load_exponent: float = 2.0
    """Service time grows by (1 + inflight/limit) ** load_exponent."""
    memory_budget_mb: float = 0.0
    """In-flight LIST response bytes beyond which the replica crashes; 0 = never crash."""
    restart_delay_s: float = 3.0
    """How long a crashed replica refuses connections before it comes back."""
    cold_start_s: float = 0.0
    """For this long after a replica (re)starts its watch cache is cold and a LIST is served from
    storage; 0 = always warm."""
    cold_list_factor: float = 1.0
    """While cold, a LIST costs this many times its service time and holds this many times its
    response bytes against the memory budget (decoded storage objects plus the encoded answer), so
    a re-LIST herd that a warm replica bears can knock a freshly restarted one over again."""
    watch_cache_window: int = 1000
    """How many past events a watch can resume from before 410 Gone."""
    bookmark_interval_s: float = 5.0
    """How often a watch with allowWatchBookmarks gets a BOOKMARK (the api-server: about a minute)."""
    cert_dir: Path | None = None
    """Where a generated serving certificate and its CA (ca.crt, tls.crt, tls.key) are written."""

    def replica_ports(self) -> list[int]:
        return [self.port + i for i in range(self.replicas)]
