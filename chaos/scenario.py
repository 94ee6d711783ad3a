"""A chaos scenario as a frozen value, loaded from YAML and validated before anything starts.

Every field is checked and every error is reported at once, naming the file and the field path;
an unknown key is an error, so a typo can never silently disable a client class or a verdict
check. This module only reads files: it never starts a process or opens a socket.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SCENARIO_DIR = Path(__file__).parent / "scenarios"
ROLES = ("well-behaved", "runaway", "neutral")
KINDS = ("request", "watch", "slow")
TARGETS = ("sim", "guard", "redis", "redis-proxy", "upstream-proxy")
ACTIONS = ("kill", "stop", "continue", "restart", "proxy", "heal")
RUNS = ("direct", "guard")
METRICS = (
    "crashes",
    "success",
    "p50_ms",
    "p99_ms",
    "p99_ratio",
    "upstream_rate",
    "upstream_requests",
    "tokenreviews",
    "subjectaccessreviews",
    "unauthenticated",
    "rejected",
    "throttled_429",
    "replicas_down_max",
)
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message lists every problem, one per line."""


@dataclass(frozen=True)
class ClusterSpec:
    """The simulated cluster: api-server replicas and their overload knobs (see chaos.sim.options)."""

    replicas: int = 1
    seed_objects: int = 100
    seed_object_bytes: int = 2048
    max_readonly_inflight: int = 40
    max_mutating_inflight: int = 20
    memory_budget_mb: float = 0.0
    restart_delay_s: float = 3.0
    base_service_ms: float | None = None
    per_object_service_us: float | None = None
    load_exponent: float | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuardSpec:
    """How guard is set up for the second run."""

    replicas: int = 1
    store: str = "embedded"
    """embedded, or redis (the suite starts a redis-server)."""
    forwarding: str = "passthrough"
    policies: tuple[Mapping[str, Any], ...] = ()
    """Inline TenantPolicy documents; a document with `repeat: N` is expanded N times with {i}."""
    policies_dir: str | None = None
    redis_proxy: bool = False
    """Put a TCP fault proxy between guard and Redis (target `redis-proxy` in faults)."""
    upstream_proxy: bool = False
    """Put a TCP fault proxy between guard and the first api-server replica."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Extra keys merged into guard.yaml as they are."""


@dataclass(frozen=True)
class RequestSpec:
    """One entry of a client's request mix. The path and body may use {i} (client index), {i%N}
    (client index modulo N), {n} (a counter) and {user}."""

    path: str
    method: str = "GET"
    weight: float = 1.0
    kind: str = "request"
    """request (read the whole answer), watch (LIST then WATCH, re-LIST when it ends), slow."""
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ClientSpec:
    """A class of identical clients."""

    name: str
    mix: tuple[RequestSpec, ...]
    role: str = "neutral"
    count: int = 1
    user: str = ""
    """The user name (may use {i}); defaults to the class name."""
    groups: tuple[str, ...] = ()
    revoked: bool = False
    """Send a token the api-server does not know (a revoked credential retried forever)."""
    forbidden: bool = False
    """Hold no RBAC rights (left out of the group chaos binds to cluster-admin): every request is a 403."""
    rate: float | None = None
    """Requests per second per client; absent means a closed loop of `concurrency` workers."""
    concurrency: int = 1
    honor_retry_after: bool = True
    timeout_s: float = 10.0
    start_s: float = 0.0
    stop_s: float | None = None
    read_delay_s: float = 0.0
    """For slow clients: pause between 1 KiB reads of the answer, holding the connection."""
    accept: str = "json"
    """What the client asks answers in: json, or protobuf (as client-go controllers do)."""
    baseline: bool | None = None
    """Run during the unflooded baseline; defaults to role == well-behaved."""

    @property
    def in_baseline(self) -> bool:
        return self.role == "well-behaved" if self.baseline is None else self.baseline

    def user_for(self, i: int) -> str:
        return (self.user or self.name).replace("{i}", str(i))


@dataclass(frozen=True)
class FaultSpec:
    at_s: float
    action: str
    target: str
    index: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    run: str
    metric: str
    op: str
    value: float
    client: str | None = None

    def describe(self) -> str:
        subject = f"{self.metric}[{self.client}]" if self.client else self.metric
        return f"{self.run}: {subject} {self.op} {self.value:g}"

    def holds(self, actual: float | None) -> bool:
        return actual is not None and OPS[self.op](actual, self.value)


@dataclass(frozen=True)
class RunVerdict:
    """A run passes when all (mode all) or at least one (mode any) of its checks hold."""

    mode: str = "all"
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    cluster: ClusterSpec
    guard: GuardSpec
    clients: tuple[ClientSpec, ...]
    duration_s: float
    baseline_s: float
    faults: tuple[FaultSpec, ...] = ()
    verdicts: Mapping[str, RunVerdict] = field(default_factory=dict)
    source: str = ""

    def shortened(self, duration_s: float = 12.0, baseline_s: float = 3.0) -> Scenario:
        """The same scenario squeezed for `--short`: faults keep their place relative to the run."""
        factor = min(1.0, duration_s / self.duration_s)
        faults = tuple(replace(f, at_s=f.at_s * factor) for f in self.faults)
        clients = tuple(
            replace(c, start_s=c.start_s * factor, stop_s=None if c.stop_s is None else c.stop_s * factor)
            for c in self.clients
        )
        return replace(
            self,
            duration_s=min(self.duration_s, duration_s),
            baseline_s=min(self.baseline_s, baseline_s),
            faults=faults,
            clients=clients,
        )


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def resolve(name: str) -> Path:
    """A scenario name (file stem in chaos/scenarios) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return SCENARIO_DIR / f"{name}.yaml"


def load(name_or_path: str) -> Scenario:
    path = resolve(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from e
    from chaos.scenario_parse import parse  # the field-by-field checks live beside this model

    return parse(raw, source=str(path))
