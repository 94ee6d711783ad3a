"""Field-by-field validation of a scenario document into `chaos.scenario.Scenario`.

It collects every problem (file and field path, e.g. `list-storm.yaml: clients[1].rate: must be a
number > 0`) and raises them together; unknown keys are errors. It never touches the network or
starts anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaos.scenario import (
    ACTIONS,
    KINDS,
    METRICS,
    OPS,
    ROLES,
    RUNS,
    TARGETS,
    Check,
    ClientSpec,
    ClusterSpec,
    FaultSpec,
    GuardSpec,
    RequestSpec,
    RunVerdict,
    Scenario,
    ScenarioError,
)

_MISSING = object()


class Fields:
    """Reads one mapping, remembering which keys were used and every error found."""

    def __init__(self, errors: list[str], where: str, raw: Any) -> None:
        self.errors, self.where = errors, where
        if not isinstance(raw, Mapping):
            errors.append(f"{where or 'document'}: must be a mapping")
            raw = {}
        self.raw: Mapping[str, Any] = raw
        self.used: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def err(self, key: str, message: str) -> None:
        self.errors.append(f"{self.path(key)}: {message}")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is _MISSING:
                self.err(key, "is required")
                return None
            return default
        return self.raw[key]

    def num(self, key: str, default: Any = _MISSING, *, minimum: float = 0.0, integer: bool = False) -> Any:
        value = self.get(key, default)
        if value is None or value is default:
            return value
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
            self.err(key, f"must be {'an integer' if integer else 'a number'} >= {minimum:g}")
            return default if default is not _MISSING else None
        return value

    def text(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] = ()) -> Any:
        value = self.get(key, default)
        if value is None or value is default:
            return value
        if not isinstance(value, str) or (choices and value not in choices):
            self.err(key, f"must be one of {', '.join(choices)}" if choices else "must be a string")
            return default if default is not _MISSING else None
        return value

    def flag(self, key: str, default: Any) -> Any:
        value = self.get(key, default)
        if value is not default and not isinstance(value, bool):
            self.err(key, "must be true or false")
            return default
        return value

    def items(self, key: str) -> list[tuple[str, Any]]:
        value = self.get(key, [])
        if not isinstance(value, list):
            self.err(key, "must be a list")
            return []
        return [(f"{self.path(key)}[{i}]", item) for i, item in enumerate(value)]

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.err(key, "must be a list of strings")
            return ()
        return tuple(value)

    def done(self) -> None:
        for key in sorted(set(self.raw) - self.used, key=str):
            self.err(str(key), "unknown key")


def parse(raw: Any, *, source: str = "<scenario>") -> Scenario:
    errors: list[str] = []
    top = Fields(errors, "", raw)
    scenario = Scenario(
        name=top.text("name"),
        description=top.text("description", ""),
        duration_s=top.num("duration", minimum=1),
        baseline_s=top.num("baseline", 5.0, minimum=0),
        cluster=_cluster(Fields(errors, "cluster", top.get("cluster", {}))),
        guard=_guard(Fields(errors, "guard", top.get("guard", {}))),
        clients=tuple(_client(Fields(errors, where, item)) for where, item in top.items("clients")),
        faults=tuple(_fault(Fields(errors, where, item)) for where, item in top.items("faults")),
        verdicts=_verdicts(Fields(errors, "verdict", top.get("verdict", {}))),
        source=source,
    )
    top.done()
    _cross_check(scenario, errors)
    if errors:
        raise ScenarioError("\n".join(f"{source}: {e}" for e in errors))
    return scenario


def _cluster(f: Fields) -> ClusterSpec:
    spec = ClusterSpec(
        replicas=f.num("replicas", 1, minimum=1, integer=True),
        seed_objects=f.num("seedObjects", 100, integer=True),
        seed_object_bytes=f.num("seedObjectBytes", 2048, minimum=1, integer=True),
        max_readonly_inflight=f.num("maxReadonlyInflight", 40, minimum=1, integer=True),
        max_mutating_inflight=f.num("maxMutatingInflight", 20, minimum=1, integer=True),
        memory_budget_mb=f.num("memoryBudgetMb", 0.0),
        restart_delay_s=f.num("restartDelayS", 3.0),
        base_service_ms=f.num("baseServiceMs", None),
        per_object_service_us=f.num("perObjectServiceUs", None),
        load_exponent=f.num("loadExponent", None),
        extra_args=f.strings("extraArgs"),
    )
    f.done()
    return spec


def _guard(f: Fields) -> GuardSpec:
    policies = []
    for where, item in f.items("policies"):
        if isinstance(item, Mapping):
            policies.append(item)
        else:
            f.errors.append(f"{where}: must be a TenantPolicy mapping")
    settings = f.get("settings", {})
    if not isinstance(settings, Mapping):
        f.err("settings", "must be a mapping")
        settings = {}
    spec = GuardSpec(
        replicas=f.num("replicas", 1, minimum=1, integer=True),
        store=f.text("store", "embedded", choices=("embedded", "redis")),
        forwarding=f.text("forwarding", "passthrough", choices=("passthrough", "impersonate")),
        policies=tuple(policies),
        policies_dir=f.text("policiesDir", None),
        redis_proxy=f.flag("redisProxy", False),
        upstream_proxy=f.flag("upstreamProxy", False),
        settings=settings,
    )
    f.done()
    return spec


def _request(f: Fields) -> RequestSpec:
    body = f.get("body", None)
    if body is not None and not isinstance(body, Mapping):
        f.err("body", "must be a mapping")
        body = None
    spec = RequestSpec(
        path=f.text("path"),
        method=f.text("method", "GET", choices=("GET", "POST", "PUT", "PATCH", "DELETE")),
        weight=f.num("weight", 1.0),
        kind=f.text("kind", "request", choices=KINDS),
        body=body,
    )
    f.done()
    return spec


def _client(f: Fields) -> ClientSpec:
    mix = tuple(_request(Fields(f.errors, where, item)) for where, item in f.items("mix"))
    if not mix:
        f.err("mix", "needs at least one request")
    spec = ClientSpec(
        name=f.text("name"),
        mix=mix,
        role=f.text("role", "neutral", choices=ROLES),
        count=f.num("count", 1, minimum=1, integer=True),
        user=f.text("user", ""),
        groups=f.strings("groups"),
        revoked=f.flag("revoked", False),
        forbidden=f.flag("forbidden", False),
        rate=f.num("rate", None, minimum=0.01),
        concurrency=f.num("concurrency", 1, minimum=1, integer=True),
        honor_retry_after=f.flag("honorRetryAfter", True),
        timeout_s=f.num("timeout", 10.0, minimum=0.1),
        start_s=f.num("start", 0.0),
        stop_s=f.num("stop", None),
        read_delay_s=f.num("readDelay", 0.0),
        accept=f.text("accept", "json", choices=("json", "protobuf")),
        baseline=f.flag("baseline", None),
    )
    f.done()
    return spec


def _fault(f: Fields) -> FaultSpec:
    settings = f.get("set", {})
    if not isinstance(settings, Mapping):
        f.err("set", "must be a mapping of fault proxy settings")
        settings = {}
    spec = FaultSpec(
        at_s=f.num("at"),
        action=f.text("action", choices=ACTIONS),
        target=f.text("target", choices=TARGETS),
        index=f.num("index", 0, integer=True),
        settings=settings,
    )
    f.done()
    return spec


def _verdicts(f: Fields) -> dict[str, RunVerdict]:
    verdicts = {run: _run_verdict(Fields(f.errors, f.path(run), f.get(run, {})), run) for run in RUNS}
    f.done()
    return verdicts


def _run_verdict(f: Fields, run: str) -> RunVerdict:
    has_any = "any" in f.raw
    mode = "any" if has_any else "all"
    checks = tuple(_check(Fields(f.errors, where, item), run) for where, item in f.items(mode))
    if has_any and "all" in f.raw:
        f.err("all", "use either all or any, not both")
    f.done()
    return RunVerdict(mode=mode, checks=checks)


def _check(f: Fields, run: str) -> Check:
    check = Check(
        run=run,
        metric=f.text("metric", choices=METRICS),
        op=f.text("op", choices=tuple(OPS)),
        value=f.num("value", minimum=-1e18),
        client=f.text("client", None),
    )
    f.done()
    return check


def _cross_check(s: Scenario, errors: list[str]) -> None:
    names = [c.name for c in s.clients]
    for name in {n for n in names if names.count(n) > 1}:
        errors.append(f"clients: name {name!r} is used twice")
    for run, verdict in s.verdicts.items():
        for i, check in enumerate(verdict.checks):
            if check.client is not None and check.client not in names:
                errors.append(f"verdict.{run}.{verdict.mode}[{i}].client: no client class {check.client!r}")
    for i, fault in enumerate(s.faults):
        if fault.target == "redis-proxy" and not s.guard.redis_proxy:
            errors.append(f"faults[{i}].target: redis-proxy needs guard.redisProxy: true")
        if fault.target == "upstream-proxy" and not s.guard.upstream_proxy:
            errors.append(f"faults[{i}].target: upstream-proxy needs guard.upstreamProxy: true")
        if fault.target.startswith("redis") and s.guard.store != "redis":
            errors.append(f"faults[{i}].target: {fault.target} needs guard.store: redis")
