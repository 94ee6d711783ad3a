"""The adaptive concurrency limit of one cluster: how many ordinary requests guard lets be at the
api-servers at once, learnt from what their answers say.

Each completed ordinary exchange reports its latency to the response head, what kind of request it
was, and its outcome. Latency is judged per kind against that kind's no-load latency (a LIST of
every pod is slow at no load, a GET is not); a window's verdict is the median of the ratios. Every
`window` seconds (longer while it has too few samples) the limit moves once, AIMD with a latency
gradient: an overload signal (api-server 429, 503/504, a failed connection, a timeout) multiplies it
by `backoff`; a median ratio above `tolerance` cuts it by tolerance/ratio (at most by half); a
window within tolerance while demand reached half the limit adds about sqrt(limit) (half the limit
until the first cut: slow start), less as the ratio nears the tolerance, so it approaches the knee
instead of jumping over it. Demand below half the limit leaves it alone, so an idle night does not
open it wide for the morning's storm.

No-load latency is measured, not guessed from loaded answers (Envoy's minRTT): at start, and again
when the limit has sat at `min` for STUCK_WINDOWS windows, a probe lets only `min` requests through
until PROBE_SAMPLES answers came, and each kind's no-load latency becomes the median of its probe
answers. A kind first seen between probes is taken to be as loaded as the kinds already known in
its window (its median over theirs, in multiples of their no-load latency): a LIST flood that
starts after the probe cannot teach guard that a loaded LIST is a normal one. Between probes a
kind's no-load latency falls to a lower window median at once, and rises towards a higher one by
at most DRIFT a window, only in light windows (demand below half the limit): bigger LISTs are
relearnt while quiet, and a loaded cluster cannot talk guard into calling its loaded latency
normal.

Pure: time comes from the injected clock; no I/O, no framework, no asyncio. It runs past 300 lines
because the window, the probe and the per-kind baselines are one feedback loop, read in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Result = Literal["ok", "client-error", "throttled", "unavailable", "error", "failed", "timeout"]
"""ok: a 1xx-3xx answer (the only ones whose latency is learnt); client-error: a 4xx but 429 (often
answered without the work: not a latency sample); throttled: the api-server's 429; unavailable: its
503 or 504; error: another 5xx (a webhook or etcd error, not load); failed: no connection or a
broken one; timeout: no answer in time."""
OVERLOAD: frozenset[str] = frozenset({"throttled", "unavailable", "failed", "timeout"})
MIN_SAMPLES = 5
"""Latency samples a window needs before its median says anything."""
STRETCH = 10
"""A window short of samples waits up to this many windows before it closes without a verdict."""
MAX_CUT = 0.5
"""The most one window's latency verdict may cut (to half)."""
SLOW_START_GAIN = 0.5
"""Until the first cut, a window within tolerance may grow the limit by up to this share of itself."""
DRIFT = 0.01
"""How much a kind's no-load latency may rise per light window (1 %: doubled in about 70)."""
PROBE_SAMPLES = 20
"""Answers a probe collects (at `min` concurrency) before it ends."""
STUCK_WINDOWS = 5
"""Windows at the minimum limit with latency above tolerance after which guard probes again."""
SLACK = 0.001
"""Seconds added to every no-load latency: sub-millisecond jitter is not load."""
MIN_KIND_SAMPLES = 3
"""Samples of a kind a window needs before its median may move that kind's no-load latency."""
KIND_SAMPLES = 64
"""Samples of a kind kept per window for that median."""
MAX_KINDS = 1024
"""Request kinds whose no-load latency is learnt; samples of further kinds count outcomes only."""
DEFAULT_COST = 0.01
"""The cost of a request before any kind's no-load latency is known."""
MAX_SAMPLES = 1024
"""Latency samples kept per window for its verdict."""
KEYS = ("enabled", "min", "max", "initial", "window", "tolerance", "backoff", "queueLength", "maxWait")


@dataclass(frozen=True)
class AdaptiveSettings:
    """A cluster's `adaptive:` section. Absent: off. Present: on unless `enabled: false`."""

    enabled: bool = False
    """Hold ordinary requests beyond the learnt limit (exempt rules and watches never are)."""
    min: int = 5
    """The limit never goes below this many concurrent ordinary requests per guard process; probes
    that measure the no-load latency run at this concurrency."""
    max: int = 1000
    """Nor above this (an api-server's default APF budget is 600 seats per replica)."""
    initial: int = 20
    """The limit a guard process starts with; until the first cut it grows by up to half itself a
    window (slow start), so a low start costs a big cluster seconds, and a fragile one nothing."""
    window: float = 1.0
    """Seconds between two moves of the limit."""
    tolerance: float = 2.0
    """Median latency, in multiples of the no-load latency, still taken as healthy."""
    backoff: float = 0.9
    """Factor applied to the limit in a window with an overload signal."""
    queue_length: int = 10
    """Requests held per flow (a tenant; a user where no policy names one) while the limit is
    reached, served round robin between flows; 0: answer 429 at once."""
    max_wait: float = 1.0
    """Seconds a held request waits for a slot before it is answered 429."""


class Fields(Protocol):
    """guard.config.fields.Fields' shape, as this module uses it."""

    def error(self, at: str, message: str) -> None: ...
    def mapping(self, raw: object, at: str, known: Sequence[str], *,
                required: Sequence[str] = ()) -> Mapping[str, object]: ...
    def boolean(self, raw: object, at: str) -> bool: ...
    def integer(self, raw: object, at: str, *, minimum: int) -> int: ...
    def seconds(self, raw: object, at: str) -> float: ...


def parse_adaptive(f: Fields, raw: object, at: str) -> AdaptiveSettings:
    """A cluster's `adaptive:` section; every problem goes to `f`, naming `at.field`."""
    d = AdaptiveSettings()
    if raw is None:
        return d
    m = f.mapping(raw, at, KEYS)
    low = f.integer(m.get("min", d.min), f"{at}.min", minimum=1)
    high = f.integer(m.get("max", d.max), f"{at}.max", minimum=1)
    initial = f.integer(m.get("initial", max(low, min(high, d.initial))), f"{at}.initial", minimum=1)
    if high < low:
        f.error(f"{at}.max", f"must be >= min ({low})")
    elif not low <= initial <= high:
        f.error(f"{at}.initial", f"must be between min ({low}) and max ({high})")
    return AdaptiveSettings(
        enabled=f.boolean(m.get("enabled", True), f"{at}.enabled"), min=low, max=high, initial=initial,
        window=f.seconds(m.get("window", d.window), f"{at}.window"),
        tolerance=_number(f, m.get("tolerance", d.tolerance), f"{at}.tolerance", above=1.0, upto=100.0),
        backoff=_number(f, m.get("backoff", d.backoff), f"{at}.backoff", above=0.0, upto=0.99),
        queue_length=f.integer(m.get("queueLength", d.queue_length), f"{at}.queueLength", minimum=0),
        max_wait=f.seconds(m.get("maxWait", d.max_wait), f"{at}.maxWait"),
    )


def _number(f: Fields, raw: object, at: str, *, above: float, upto: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not above < raw <= upto:
        f.error(at, f"must be a number > {above:g} and <= {upto:g} (got {raw!r})")
        return upto
    return float(raw)


@dataclass
class _Kind:
    """The no-load latency of one kind of request (inf: not known yet), and its samples this window."""

    floor: float = math.inf
    seen: list[float] = field(default_factory=list)

    def relearn(self, *, probe: bool, light: bool, load: float = 1.0) -> None:
        """Take this window's median: as it is after a probe; if lower, or if higher by at most
        DRIFT in a light window, otherwise. A kind first seen outside a probe takes its median
        over `load`, how much slower than their no-load latency the known kinds were."""
        if len(self.seen) >= (1 if probe else MIN_KIND_SAMPLES):
            typical = _median(self.seen)
            if self.floor == math.inf and not probe:
                self.floor = typical / load
            elif probe or typical < self.floor:
                self.floor = typical
            elif light:
                self.floor = min(typical, self.floor * (1.0 + DRIFT))
        self.seen.clear()


@dataclass
class _Window:
    started: float
    samples: int = 0
    answered: int = 0
    overload: int = 0
    peak: int = 0
    """The most requests wanting a slot at once (in flight plus held)."""
    timed: list[tuple[_Kind, float]] = field(default_factory=list)
    """Latencies of answered exchanges (at most MAX_SAMPLES), judged when the window closes."""
    kinds: dict[int, _Kind] = field(default_factory=dict)
    """The kinds answered this window, by id."""


class AdaptiveLimit:
    """The limit of one cluster in one guard process; `limit` is read on every request."""

    def __init__(self, settings: AdaptiveSettings, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._limit = float(settings.initial)
        self.limit = settings.min
        self.probing = True
        """Measuring no-load latency: `limit` is `min` until PROBE_SAMPLES answers came."""
        self.probes = 0
        self._kinds: dict[str, _Kind] = {}
        self._window = _Window(clock())
        self._stuck = 0
        self.slow_start = True
        """Until the first cut the limit grows by up to half itself a window, not by sqrt(limit)."""
        self.last: dict[str, Any] = {}
        """The last window's figures, for /debug/guard/adaptive."""
        self.increases = self.decreases = self.overload_signals = 0

    def configure(self, settings: AdaptiveSettings) -> None:
        """New settings (a reload): keep what was learnt, clamped to the new bounds."""
        self.settings = settings
        self._set(min(max(self._limit, settings.min), settings.max))

    def demand(self, wanted: int) -> None:
        """`wanted` requests want a slot now (in flight plus held)."""
        window = self._window
        if wanted > window.peak:
            window.peak = wanted
        self._maybe_close()

    def observe(self, seconds: float, outcome: Result, kind: str) -> None:
        """One ordinary exchange ended (at its response head, or failing) after `seconds`."""
        window = self._window
        window.samples += 1
        if outcome in OVERLOAD:
            window.overload += 1
            self.overload_signals += 1
        elif outcome == "ok":
            window.answered += 1
            learnt = self._kinds.get(kind)
            if learnt is None and len(self._kinds) < MAX_KINDS:
                learnt = self._kinds[kind] = _Kind()
            if learnt is not None:
                window.kinds[id(learnt)] = learnt
                if len(learnt.seen) < KIND_SAMPLES:
                    learnt.seen.append(seconds)
                if len(window.timed) < MAX_SAMPLES:
                    window.timed.append((learnt, seconds))
        self._maybe_close()

    def _maybe_close(self) -> None:
        now = self._clock()
        window = self._window
        elapsed = now - window.started
        if self.probing:
            if window.answered < PROBE_SAMPLES and elapsed < self.settings.window * STRETCH:
                return
            self._end_probe(window)
        else:
            if elapsed < self.settings.window:
                return
            if (len(window.timed) < MIN_SAMPLES and not window.overload
                    and elapsed < self.settings.window * STRETCH):
                return
            light = window.peak * 2 < self._limit
            known = [(s + SLACK) / (k.floor + SLACK) for k, s in window.timed if k.floor < math.inf]
            load = max(1.0, _median(known)) if known else 1.0
            for learnt in window.kinds.values():
                learnt.relearn(probe=False, light=light, load=load)
            self._decide(window)
        self._window = _Window(now)

    def _end_probe(self, window: _Window) -> None:
        """No-load latencies from the probe's answers; back to the limit it interrupted. A probe
        that got no answer (the cluster is down) goes on."""
        if not window.answered:
            return
        for learnt in window.kinds.values():
            learnt.relearn(probe=True, light=False)
        self.probing, self._stuck = False, 0
        self.probes += 1
        self._set(self._limit)
        self.last = {"probe": True, "samples": window.samples, "overload": window.overload,
                     "limitAfter": round(self._limit, 2)}

    def _decide(self, window: _Window) -> None:
        s = self.settings
        ratios = [(seconds + SLACK) / (k.floor + SLACK) for k, seconds in window.timed if k.floor < math.inf]
        ratio = _median(ratios) if len(ratios) >= MIN_SAMPLES else None
        factor = s.backoff if window.overload else 1.0
        if ratio is not None and ratio > s.tolerance:
            factor = min(factor, max(MAX_CUT, s.tolerance / ratio))
        before = self._limit
        if factor < 1.0:
            self._set(max(s.min, before * factor))
            self.decreases += before > self._limit
            self.slow_start = False
        elif ratio is not None and window.peak * 2 >= before:
            room = 1.0 - (ratio - 1.0) / (s.tolerance - 1.0) if ratio > 1.0 else 1.0
            step = max(1.0, math.sqrt(before), before * SLOW_START_GAIN if self.slow_start else 0.0)
            self._set(min(s.max, before + step * max(0.1, room)))
            self.increases += self._limit > before
        stuck = self._limit <= s.min and ratio is not None and ratio > s.tolerance
        self._stuck = self._stuck + 1 if stuck else 0
        self.last = {"samples": window.samples, "overload": window.overload, "peakDemand": window.peak,
                     "latencyRatio": None if ratio is None else round(ratio, 3),
                     "limitBefore": round(before, 2), "limitAfter": round(self._limit, 2)}
        if self._stuck >= STUCK_WINDOWS:
            self.probing = True
            self.limit = s.min

    def cost(self, kind: str) -> float:
        """What a request of `kind` is expected to hold a slot for, in seconds: its no-load
        latency; before that is known, the median of its answers so far this window; for a kind
        never answered, the dearest known kind's (a new kind must not pass for a cheap one)."""
        learnt = self._kinds.get(kind)
        if learnt is not None and learnt.floor < math.inf:
            return learnt.floor
        if learnt is not None and learnt.seen:
            return _median(learnt.seen)
        known = [k.floor for k in self._kinds.values() if k.floor < math.inf]
        return max(known) if known else DEFAULT_COST

    def _set(self, value: float) -> None:
        self._limit = value
        self.limit = self.settings.min if self.probing else max(1, int(value))

    def snapshot(self) -> dict[str, Any]:
        s = self.settings
        fastest = sorted(self._kinds.items(), key=lambda kv: kv[1].floor)
        return {"limit": self.limit, "min": s.min, "max": s.max, "window": s.window,
                "tolerance": s.tolerance, "backoff": s.backoff, "probing": self.probing,
                "probes": self.probes, "slowStart": self.slow_start, "increases": self.increases,
                "decreases": self.decreases, "overloadSignals": self.overload_signals,
                "lastWindow": self.last, "kindsLearnt": len(self._kinds),
                "noLoadLatencyMs": {k: round(v.floor * 1000, 3) for k, v in fastest[:20]}}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def result_of(status: int) -> Result:
    """The outcome of an exchange the api-server answered with `status`."""
    if status == 429:
        return "throttled"
    if status in (503, 504):
        return "unavailable"
    if status >= 500:
        return "error"
    return "client-error" if status >= 400 else "ok"
