"""Once a second, read what the simulator and guard say about themselves during a chaos run:
the simulator's in-flight requests, crashes and replicas up (its `/metrics`), guard's admission
decisions per tenant (its admin `/metrics`), and the simulator's per-user request counts
(`/debug/sim/state`), summed across simulator restarts (`Tallies`).

It only reads: it never changes the processes it watches, and a process that does not answer
(crashed, stopped) is recorded as a gap, never as an error of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# guard's decision counter; the runner falls back to any counter labelled tenant and decision.
DECISIONS_METRIC = "guard_admission_decisions"
TIMEOUT = aiohttp.ClientTimeout(total=0.9)


@dataclass
class Sample:
    t: float
    sim_inflight: float | None = None
    sim_crashes: float | None = None
    replicas_up: float | None = None
    decisions: dict[str, dict[str, float]] = field(default_factory=dict)
    """tenant -> decision -> count in this second, summed over guard replicas."""


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(text):
            samples.extend((s.name, dict(s.labels), float(s.value)) for s in family.samples)
    return samples


def sim_figures(samples: Sequence[tuple[str, dict[str, str], float]]) -> tuple[float, float, float]:
    """(in-flight, crashes, replicas up) summed over replicas."""
    inflight = sum(v for n, _, v in samples if n == "sim_inflight_requests")
    crashes = sum(v for n, _, v in samples if n == "sim_crashes_total")
    up = sum(v for n, _, v in samples if n == "sim_replica_up")
    return inflight, crashes, up


def decision_counts(samples: Sequence[tuple[str, dict[str, str], float]]) -> dict[tuple[str, str], float]:
    """Cumulative (tenant, decision) counts from guard's metrics, summed over the other labels."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    named = [s for s in samples if s[0].startswith(DECISIONS_METRIC) and s[0].endswith("_total")]
    fallback = [s for s in samples if s[0].endswith("_total") and {"tenant", "decision"} <= set(s[1])]
    for _, labels, value in named or fallback:
        decision = labels.get("decision") or labels.get("outcome", "")
        counts[(labels.get("tenant", ""), decision)] += value
    return counts


def counters(state: Mapping[str, Any]) -> dict[str, int]:
    """Every count of a simulator state, flat: `user/NAME`, `sar/NAME`, `tokenreviews`, `unauthenticated`."""
    flat = {f"user/{u}": n for u, n in user_counts(state).items()}
    flat.update({f"sar/{u}": n for u, n in access_reviews(state).items()})
    flat["tokenreviews"] = tokenreview_total(state)
    flat["unauthenticated"] = unauthenticated_total(state)
    return flat


class Tallies:
    """The simulator's counts summed across its restarts: a restarted simulator counts from zero
    again (its state's `epoch` changes), so a plain after-minus-before would lose everything
    counted before the restart and can even go negative."""

    def __init__(self, start: Mapping[str, Any]) -> None:
        self.totals: dict[str, int] = {}
        self._epoch = start.get("epoch")
        self._last = counters(start)

    def absorb(self, state: Mapping[str, Any]) -> None:
        if not state:
            return  # no answer (crashed, stopped): the next state carries the counts
        now, epoch = counters(state), state.get("epoch")
        restarted = epoch != self._epoch
        for key, value in now.items():
            delta = value if restarted else value - self._last.get(key, 0)
            if delta > 0:
                self.totals[key] = self.totals.get(key, 0) + delta
        self._epoch, self._last = epoch, now

    def per(self, prefix: str) -> dict[str, int]:
        return {k[len(prefix):]: v for k, v in self.totals.items() if k.startswith(prefix)}

    def total(self, key: str) -> int:
        return self.totals.get(key, 0)


class Observer:
    """Samples every second until stopped; `samples` is the timeline of the phase."""

    def __init__(self, sim_urls: Sequence[str], guard_admin_urls: Sequence[str], t0: float) -> None:
        self.sim_urls, self.guard_urls, self.t0 = list(sim_urls), list(guard_admin_urls), t0
        self.samples: list[Sample] = []
        self.last: dict[str, dict[tuple[str, str], float]] = {}
        self.tallies: Tallies | None = None
        """Set (with `admin_token`) to also sum the simulator's counts every second."""
        self.admin_token = ""

    async def fetch(self, session: aiohttp.ClientSession, url: str) -> str | None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
            async with session.get(url) as resp:
                if resp.status == 200:
                    return await resp.text()
        return None

    async def sample(self, session: aiohttp.ClientSession) -> Sample:
        loop = asyncio.get_running_loop()
        sample = Sample(t=loop.time() - self.t0)
        for url in self.sim_urls:
            text = await self.fetch(session, f"{url}/metrics")
            if text is not None:
                sample.sim_inflight, sample.sim_crashes, sample.replicas_up = sim_figures(parse_metrics(text))
                break
        for url in self.guard_urls:
            text = await self.fetch(session, f"{url}/metrics")
            if text is not None:
                self.add_decisions(sample, url, decision_counts(parse_metrics(text)))
        if self.tallies is not None:
            self.tallies.absorb(await sim_state(self.sim_urls, self.admin_token))
        return sample

    def add_decisions(self, sample: Sample, url: str, counts: Mapping[tuple[str, str], float]) -> None:
        # A restarted replica starts from zero: count only increases, per replica.
        previous = self.last.get(url, {})
        for (tenant, decision), value in counts.items():
            delta = value - previous.get((tenant, decision), 0.0)
            if delta > 0:
                per_tenant = sample.decisions.setdefault(tenant or "-", {})
                per_tenant[decision] = per_tenant.get(decision, 0.0) + delta
        self.last[url] = dict(counts)

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            with contextlib.suppress(Exception):  # prime the counters so the first second is a delta
                await self.sample(session)
            while True:
                await asyncio.sleep(1.0)
                self.samples.append(await self.sample(session))


async def sim_state(sim_urls: Sequence[str], admin_token: str) -> dict[str, Any]:
    """The simulator's recorder (`/debug/sim/state`) from the first replica that answers."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for url in sim_urls:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                async with session.get(f"{url}/debug/sim/state", headers=headers) as resp:
                    if resp.status == 200:
                        data = await resp.json()
                        return data if isinstance(data, dict) else {}
    return {}


def user_counts(state: Mapping[str, Any]) -> dict[str, int]:
    """Per-user request counts from the recorder, whatever its exact nesting."""
    users = state.get("users")
    return {str(u): _count(v) for u, v in users.items()} if isinstance(users, Mapping) else {}


def tokenreview_total(state: Mapping[str, Any]) -> int:
    """TokenReviews the api-server answered, failed ones (unknown tokens) included."""
    totals = state.get("totals")
    if isinstance(totals, Mapping) and isinstance(totals.get("tokenReviews"), int):
        return int(totals["tokenReviews"])
    reviews = state.get("tokenReviews")
    return sum(_count(v) for v in reviews.values()) if isinstance(reviews, Mapping) else 0


def access_reviews(state: Mapping[str, Any]) -> dict[str, int]:
    """SubjectAccessReviews the api-server answered, per reviewed user."""
    reviews = state.get("subjectAccessReviews")
    return {str(u): _count(v) for u, v in reviews.items()} if isinstance(reviews, Mapping) else {}


def unauthenticated_total(state: Mapping[str, Any]) -> int:
    totals = state.get("totals")
    return _count(totals.get("unauthenticated", 0)) if isinstance(totals, Mapping) else 0


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, Mapping):
        for key in ("total", "count", "requests"):
            if isinstance(value.get(key), int | float):
                return int(value[key])
        return sum(_count(v) for v in value.values())
    return 0
