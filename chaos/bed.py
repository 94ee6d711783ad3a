"""The test bed of one chaos run: tokens, RBAC bootstrap, the simulator's command line, guard's
settings and policies, and starting all of it (simulator, Redis, fault proxies, guard replicas).

Everything it writes goes under the run's work directory; everything it starts is registered with
the run's `Processes` group (or closed by `Bed.close`), so nothing outlives the run.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaos import processes
from chaos.processes import Proc, Processes
from chaos.scenario import Scenario

CLIENTS_GROUP = "chaos:clients"
ADMIN, GUARD_USER = "chaos-admin", "guard"
BOOTSTRAP = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "chaos-clients-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": CLIENTS_GROUP}],
    }
]


@dataclass
class Bed:
    """What a run's clients and observers need to know about the started bed."""

    sim: Proc
    tokens: dict[str, str]
    guards: list[Proc] = field(default_factory=list)
    redis: Proc | None = None
    proxies: dict[str, Any] = field(default_factory=dict)

    def client_urls(self) -> list[str]:
        return [p.urls[0] for p in self.guards] if self.guards else list(self.sim.urls)

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.stop()


def write_tokens(scenario: Scenario, workdir: Path) -> tuple[Path, dict[str, str]]:
    """A static token file (api-server format) for every client user, the admin and guard.
    `tokens["revoked"]` is a token the api-server does not know."""
    tokens: dict[str, str] = {}
    lines = []
    people: dict[str, tuple[str, ...]] = {ADMIN: ("system:masters",), GUARD_USER: ("system:masters",)}
    for spec in scenario.clients:
        for i in range(spec.count):
            groups = tuple(g.replace("{i}", str(i)) for g in spec.groups)
            people.setdefault(spec.user_for(i), groups if spec.forbidden else (*groups, CLIENTS_GROUP))
    for n, (user, groups) in enumerate(people.items()):
        tokens[user] = secrets.token_hex(16)
        lines.append(f'{tokens[user]},{user},uid-{n},"{",".join(groups)}"')
    tokens["revoked"] = secrets.token_hex(16)
    path = workdir / "tokens.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, tokens


def sim_args(scenario: Scenario, token_file: Path, bootstrap: Path) -> list[str]:
    c = scenario.cluster
    args = {
        "--token-file": token_file,
        "--bootstrap": bootstrap,
        "--seed-objects": c.seed_objects,
        "--seed-object-bytes": c.seed_object_bytes,
        "--max-readonly-inflight": c.max_readonly_inflight,
        "--max-mutating-inflight": c.max_mutating_inflight,
        "--memory-budget-mb": c.memory_budget_mb,
        "--restart-delay-s": c.restart_delay_s,
        "--base-service-ms": c.base_service_ms,
        "--per-object-service-us": c.per_object_service_us,
        "--load-exponent": c.load_exponent,
    }
    argv = [x for k, v in args.items() if v is not None for x in (k, str(v))]
    return [*argv, *c.extra_args]


def expand_policies(docs: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
    """Inline policies; a document with `repeat: N` becomes N documents with {i} filled in."""
    out = []
    for doc in docs:
        body = {k: v for k, v in doc.items() if k != "repeat"}
        for i in range(int(doc.get("repeat", 1))):
            text = yaml.safe_dump(body).replace("{i}", str(i)) if "repeat" in doc else yaml.safe_dump(body)
            out.append(yaml.safe_load(text))
    return out


def write_policies(scenario: Scenario, workdir: Path) -> Path | None:
    if scenario.guard.policies_dir:
        return Path(scenario.guard.policies_dir).resolve()
    docs = expand_policies(scenario.guard.policies)
    if not docs:
        return None
    folder = workdir / "policies"
    folder.mkdir(exist_ok=True)
    for n, doc in enumerate(docs):
        name = doc.get("metadata", {}).get("name", f"policy-{n}")
        (folder / f"{n:03d}-{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def guard_settings(
    scenario: Scenario, bed: Bed, policies: Path | None, listen: int, admin: int
) -> dict[str, Any]:
    upstream = "upstream" in bed.proxies
    servers = list(bed.sim.urls)
    if upstream:
        servers[0] = f"http://127.0.0.1:{bed.proxies['upstream'].port}"
    settings: dict[str, Any] = {
        "listen": f"127.0.0.1:{listen}",
        "admin": f"127.0.0.1:{admin}",
        "clusters": [{"name": "sim", "servers": servers, "token": bed.tokens[GUARD_USER]}],
        "forwarding": scenario.guard.forwarding,
    }
    if policies is not None:
        settings["policies"] = str(policies)
    if bed.redis is not None:
        redis_url = bed.redis.urls[0]
        if "redis" in bed.proxies:
            redis_url = f"redis://127.0.0.1:{bed.proxies['redis'].port}/0"
        settings["redis"] = redis_url
    extra = dict(scenario.guard.settings)
    # `clusters: [{authorize: ...}]` adds keys to the generated cluster entries instead of replacing them
    for entry, more in zip(settings["clusters"], extra.pop("clusters", None) or [], strict=False):
        entry.update(more)
    settings.update(extra)
    return settings


async def start(scenario: Scenario, procs: Processes, *, with_guard: bool) -> Bed:
    workdir = procs.workdir
    token_file, tokens = write_tokens(scenario, workdir)
    bootstrap = workdir / "bootstrap.yaml"
    bootstrap.write_text(yaml.safe_dump_all(BOOTSTRAP))
    sim = await processes.start_sim(
        procs, sim_args(scenario, token_file, bootstrap), scenario.cluster.replicas
    )
    bed = Bed(sim=sim, tokens=tokens)
    if with_guard:
        await start_guards(scenario, procs, bed)
    return bed


async def start_guards(scenario: Scenario, procs: Processes, bed: Bed) -> None:
    from chaos.faults import FaultProxy  # only runs with guard need fault proxies

    if scenario.guard.store == "redis":
        bed.redis = await processes.start_redis(procs)
        if scenario.guard.redis_proxy:
            port = int(bed.redis.urls[0].rsplit(":", 1)[1].split("/")[0])
            bed.proxies["redis"] = FaultProxy(listen_port=0, target=("127.0.0.1", port))
    if scenario.guard.upstream_proxy:
        port = int(bed.sim.urls[0].rsplit(":", 1)[1])
        bed.proxies["upstream"] = FaultProxy(listen_port=0, target=("127.0.0.1", port))
    for proxy in bed.proxies.values():
        await proxy.start()
    policies = write_policies(scenario, procs.workdir)
    for i in range(scenario.guard.replicas):
        listen, admin = processes.free_port(), processes.free_port()
        config = procs.workdir / f"guard-{i}.yaml"
        config.write_text(yaml.safe_dump(guard_settings(scenario, bed, policies, listen, admin)))
        bed.guards.append(await processes.start_guard(procs, f"guard-{i}", config, listen, admin))
