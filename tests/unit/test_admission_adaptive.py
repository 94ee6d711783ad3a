"""The adaptive concurrency limit (guard.admission.adaptive), driven by a fake clock and a model
api-server whose latency grows with the requests in flight, and its `adaptive:` settings."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from guard.admission.adaptive import (
    AdaptiveLimit,
    AdaptiveSettings,
    Result,
    parse_adaptive,
    result_of,
)
from guard.config.fields import Fields
from guard.kube.errors import ConfigError
from guard.settings import parse
from tests.doubles import FakeClock


def limiter(**settings: object) -> tuple[AdaptiveLimit, FakeClock]:
    clock = FakeClock(0.0)
    values: dict[str, object] = {"enabled": True, "min": 5, "max": 500, "initial": 20, **settings}
    return AdaptiveLimit(AdaptiveSettings(**values), clock=clock), clock  # type: ignore[arg-type]


def model(capacity: int, base: float = 0.02) -> Callable[[int], float]:
    """The simulator's service time: base x (1 + in flight / capacity) ** 2."""
    return lambda in_flight: base * (1 + in_flight / capacity) ** 2


def window(lim: AdaptiveLimit, clock: FakeClock, demand: int, latency: Callable[[int], float], *,
           samples: int = 50, outcome: Result = "ok", kind: str = "get pods") -> int:
    """One window of `demand` requests wanting slots: in flight is min(limit, demand), each of
    `samples` exchanges answers after latency(in flight) (spread +-10 % deterministically)."""
    in_flight = min(lim.limit, demand)
    lim.demand(demand)
    for i in range(samples):
        spread = 1.0 + 0.1 * math.sin(i)
        lim.observe(latency(in_flight) * spread, outcome, kind)
    clock.now += lim.settings.window
    lim.demand(demand)  # closes the window
    return lim.limit


def run(lim: AdaptiveLimit, clock: FakeClock, windows: int, demand: int,
        latency: Callable[[int], float], **kw: object) -> list[int]:
    return [window(lim, clock, demand, latency, **kw) for _ in range(windows)]  # type: ignore[arg-type]


def knee(capacity: int, probe: int = 5, tolerance: float = 2.0) -> float:
    """In flight where the model's latency reaches `tolerance` x what a probe at `probe` measured."""
    return capacity * (math.sqrt(tolerance) * (1 + probe / capacity) - 1)


def test_a_probe_at_min_measures_no_load_latency_first() -> None:
    """At start the limit is `min` until 20 answers came; then `initial`, with their median as the
    no-load latency."""
    lim, _ = limiter(initial=30)
    assert lim.probing and lim.limit == 5
    for i in range(19):
        lim.observe(0.010 + 0.001 * (i % 3), "ok", "get pods")
    assert lim.probing and lim.limit == 5
    lim.observe(0.011, "ok", "get pods")
    assert not lim.probing and lim.limit == 30
    assert lim.snapshot()["noLoadLatencyMs"] == {"get pods": 11.0}


def test_a_probe_without_answers_goes_on() -> None:
    """A cluster that only fails keeps the limit at `min`: no answer, no no-load latency."""
    lim, clock = limiter(initial=30)
    for _ in range(30):
        lim.observe(5.0, "failed", "get pods")
        clock.now += 1.0
    assert lim.probing and lim.limit == 5


@pytest.mark.parametrize(("capacity", "initial", "demand", "target"), [
    (40, 20, 1000, knee(40)),     # a small api-server, a flood far beyond it
    (40, 100, 1000, knee(40)),    # starting far above what it bears
    (400, 20, 5000, knee(400)),   # a big one: slow start climbs there
    (400, 10, 60, 120),           # demand below the knee: the limit follows twice the demand
])
def test_the_limit_converges_near_the_knee_or_the_demand(capacity: int, initial: int, demand: int,
                                                         target: float) -> None:
    """After 60 windows the limit sits within 25 % of min(knee, 2 x demand) and stays in a band
    no wider than a quarter of it for the next 200 windows: no oscillation that grows."""
    lim, clock = limiter(initial=initial, max=2000)
    run(lim, clock, 60, demand, model(capacity))
    later = run(lim, clock, 200, demand, model(capacity))
    assert 0.75 * target <= later[0] <= 1.25 * target
    assert max(later) - min(later) <= 0.25 * target
    assert 0.75 * target <= min(later) and max(later) <= 1.25 * target


def learnt(**settings: object) -> tuple[AdaptiveLimit, FakeClock]:
    """A limiter past its first probe (20 GETs of 10 ms)."""
    lim, clock = limiter(**settings)
    for _ in range(20):
        lim.observe(0.010, "ok", "get pods")
    assert not lim.probing
    return lim, clock


def test_an_overload_signal_cuts_once_per_window_however_many_arrive() -> None:
    """100 api-server 429s in one window multiply the limit by backoff once (100 -> 90)."""
    lim, clock = learnt(initial=100)
    lim.demand(100)
    for _ in range(100):
        lim.observe(0.001, "throttled", "get pods")
    assert lim.limit == 100  # the window is still open
    clock.now += 1.0
    lim.demand(100)
    assert lim.limit == 90
    assert lim.decreases == 1 and lim.overload_signals == 100


@pytest.mark.parametrize(("status", "outcome", "cuts"), [
    (200, "ok", False), (404, "client-error", False), (409, "client-error", False),
    (429, "throttled", True), (503, "unavailable", True), (504, "unavailable", True),
    (500, "error", False), (502, "error", False),
])
def test_which_answers_are_overload_signals(status: int, outcome: str, cuts: bool) -> None:
    """429, 503 and 504 cut the limit; a webhook's 500, a 404 or a conflict does not."""
    assert result_of(status) == outcome
    lim, clock = learnt(initial=100)
    for _ in range(10):
        lim.observe(0.01, result_of(status), "get pods")
    clock.now += 1.0
    lim.demand(0)
    assert (lim.limit < 100) is cuts


@pytest.mark.parametrize("outcome", ["failed", "timeout"])
def test_failed_connections_and_timeouts_cut(outcome: Result) -> None:
    lim, clock = learnt(initial=100)
    lim.observe(5.0, outcome, "list pods")
    clock.now += 1.0
    lim.demand(0)
    assert lim.limit == 90


def test_bounds_hold_under_endless_overload_and_endless_health() -> None:
    """300 windows of 429s end at min, never below; 300 healthy saturated windows end at max."""
    lim, clock = limiter(initial=50, min=7, max=120)
    seen = run(lim, clock, 300, 1000, model(40), outcome="throttled", samples=5)
    assert min(seen) == 7 and seen[-1] == 7
    lim, clock = limiter(initial=50, min=7, max=120)
    seen = run(lim, clock, 300, 10_000, lambda _: 0.01)
    assert max(seen) == 120 and seen[-1] == 120


def test_recovery_after_an_overload_episode() -> None:
    """20 windows of 429s drive the limit to min; once the api-server is healthy again it climbs
    back to the knee within 60 windows."""
    lim, clock = limiter(initial=20)
    run(lim, clock, 40, 1000, model(40))
    learnt = lim.limit
    run(lim, clock, 20, 1000, model(40), outcome="throttled", samples=5)
    assert lim.limit == 5
    back = run(lim, clock, 60, 1000, model(40))
    assert back[-1] >= 0.8 * learnt


def test_an_idle_cluster_does_not_open_the_limit() -> None:
    """Demand under half the limit never grows it, however fast the answers."""
    lim, clock = limiter(initial=40)
    assert set(run(lim, clock, 100, 19, lambda _: 0.002)) == {40}


def test_each_kind_is_judged_against_its_own_no_load_latency() -> None:
    """A slow LIST kind (100 ms) mixed with fast GETs (2 ms) at no load is healthy: no cut."""
    lim, clock = limiter(initial=40)
    for _ in range(50):
        lim.demand(30)
        for i in range(20):
            lim.observe(0.002 * (1 + 0.05 * (i % 3)), "ok", "get pods namespaced")
            lim.observe(0.100 * (1 + 0.05 * (i % 3)), "ok", "list pods cluster")
        clock.now += 1.0
    lim.demand(30)
    assert lim.decreases == 0 and lim.limit > 40


def floor_ms(lim: AdaptiveLimit, kind: str = "get pods") -> float:
    return float(lim.snapshot()["noLoadLatencyMs"][kind])


def test_a_kind_first_seen_under_load_is_taken_to_be_as_loaded_as_the_known_ones() -> None:
    """After a probe of GETs at 10 ms, a window where GETs take 20 ms and a new LIST kind 200 ms:
    the LIST's no-load latency is taken as ~105 ms (200 over the GETs' 1.9x), not 200 ms."""
    lim, clock = learnt(initial=40)
    lim.demand(40)
    for _ in range(10):
        lim.observe(0.020, "ok", "get pods")
        lim.observe(0.200, "ok", "list pods")
    clock.now += 1.0
    lim.demand(40)
    assert floor_ms(lim, "list pods") == pytest.approx(200 * 11 / 21, rel=0.01)
    assert floor_ms(lim, "get pods") == pytest.approx(10.0)


def test_a_slow_rise_of_no_load_latency_is_followed_in_light_windows() -> None:
    """LISTs grow from 10 to 15 ms while demand is light: 50 light windows later the no-load
    latency is 15 ms (1 % a window at most), without a single cut."""
    lim, clock = limiter(initial=40)
    run(lim, clock, 5, 10, lambda _: 0.010)
    assert floor_ms(lim) == pytest.approx(10.0, rel=0.1)
    run(lim, clock, 10, 10, lambda _: 0.015)
    assert floor_ms(lim) < 12.0
    run(lim, clock, 40, 10, lambda _: 0.015)
    assert floor_ms(lim) == pytest.approx(15.0, rel=0.1) and lim.decreases == 0


def test_loaded_latency_is_not_learnt_as_normal_until_a_probe_measures_it() -> None:
    """Saturated windows at 3x the no-load latency cut the limit to min, and the no-load latency
    stays; after STUCK_WINDOWS windows there a probe measures again, and the cluster's new normal
    is accepted: the limit grows from min again."""
    lim, clock = limiter(initial=40, max=50)
    run(lim, clock, 5, 100, lambda _: 0.010)
    cut = run(lim, clock, 7, 100, lambda _: 0.030)
    assert cut == sorted(cut, reverse=True) and cut[-1] == 5
    assert floor_ms(lim) == pytest.approx(10.0, rel=0.1) and lim.probes == 1
    run(lim, clock, 5, 100, lambda _: 0.030)
    assert lim.probes == 2 and floor_ms(lim) == pytest.approx(30.0, rel=0.1)
    assert run(lim, clock, 5, 100, lambda _: 0.030)[-1] > 5


def test_a_window_short_of_samples_waits_for_more() -> None:
    """Two samples after a window's time decide nothing; the window closes once it has five."""
    lim, clock = learnt(initial=40)
    lim.last = {}
    lim.demand(40)
    lim.observe(1.0, "ok", "list pods")
    clock.now += 1.0
    lim.observe(1.0, "ok", "list pods")
    assert lim.last == {}
    for _ in range(3):
        lim.observe(1.0, "ok", "list pods")
    assert lim.last["samples"] == 5


def test_reconfigure_keeps_what_was_learnt_within_the_new_bounds() -> None:
    lim, clock = limiter(initial=20)
    run(lim, clock, 40, 1000, model(40))
    learnt = lim.limit
    lim.configure(AdaptiveSettings(enabled=True, min=5, max=500, initial=100))
    assert lim.limit == learnt
    lim.configure(AdaptiveSettings(enabled=True, min=1, max=8, initial=4))
    assert lim.limit == 8


def _parse(raw: object) -> tuple[AdaptiveSettings, list[str]]:
    f = Fields("guard.yaml", Path("."))
    return parse_adaptive(f, raw, "clusters[0].adaptive"), f.problems


@pytest.mark.parametrize(("raw", "expected"), [
    (None, AdaptiveSettings()),
    ({}, AdaptiveSettings(enabled=True)),
    ({"enabled": False, "max": 50}, AdaptiveSettings(enabled=False, max=50, initial=20)),
    ({"min": 2, "max": 40, "initial": 8, "window": "500ms", "tolerance": 1.5, "backoff": 0.8,
      "queueLength": 0, "maxWait": 2},
     AdaptiveSettings(True, 2, 40, 8, 0.5, 1.5, 0.8, 0, 2.0)),
])
def test_settings(raw: object, expected: AdaptiveSettings) -> None:
    """Absent: off; present: on with production defaults (min 10, initial 20, max 1000)."""
    settings, problems = _parse(raw)
    assert problems == [] and settings == expected


@pytest.mark.parametrize(("raw", "problem"), [
    ({"min": 0}, "clusters[0].adaptive.min: must be an integer >= 1"),
    ({"min": 50, "max": 10}, "clusters[0].adaptive.max: must be >= min (50)"),
    ({"min": 5, "max": 10, "initial": 20},
     "clusters[0].adaptive.initial: must be between min (5) and max (10)"),
    ({"tolerance": 1}, "clusters[0].adaptive.tolerance: must be a number > 1 and <= 100 (got 1)"),
    ({"backoff": 1.0}, "clusters[0].adaptive.backoff: must be a number > 0 and <= 0.99 (got 1.0)"),
    ({"backoff": "half"}, "clusters[0].adaptive.backoff: must be a number > 0 and <= 0.99 (got 'half')"),
    ({"queueLength": -1}, "clusters[0].adaptive.queueLength: must be an integer >= 0"),
    ({"maxWait": 0}, "clusters[0].adaptive.maxWait: must be a number of seconds > 0"),
    ({"enabled": "yes"}, "clusters[0].adaptive.enabled: must be true or false"),
    ({"inital": 5}, "clusters[0].adaptive.inital: unknown field (did you mean initial?)"),
    ([1], "clusters[0].adaptive: must be a mapping"),
])
def test_settings_errors_name_file_and_field(raw: object, problem: str) -> None:
    _, problems = _parse(raw)
    assert any(p.startswith(f"guard.yaml: {problem}") for p in problems), problems


def test_guard_yaml_takes_adaptive_per_cluster() -> None:
    """In guard.yaml, per cluster; a typo is an error naming the cluster's field."""
    doc = {"listen": "127.0.0.1:0", "clusters": [
        {"name": "a", "server": "http://127.0.0.1:1", "token": "t", "adaptive": {"max": 300}},
        {"name": "b", "server": "http://127.0.0.1:2", "token": "t"}]}
    settings = parse(doc, "guard.yaml")
    assert settings.clusters[0].adaptive == AdaptiveSettings(enabled=True, max=300)
    assert settings.clusters[1].adaptive.enabled is False
    doc["clusters"][1]["adaptive"] = {"maxwait": 1}  # type: ignore[index]
    with pytest.raises(ConfigError) as raised:
        parse(doc, "guard.yaml")
    assert raised.value.problems == [
        "guard.yaml: clusters[1].adaptive.maxwait: unknown field (did you mean maxWait?)"]
