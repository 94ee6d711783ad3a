"""GCRA keeps admitted cost within burst + rate x interval, lets a saturating client use its rate,
and survives clock steps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from guard.admission import gcra
from guard.admission.embedded import EmbeddedStore
from guard.admission.store import Limit

rates = st.floats(min_value=0.5, max_value=200.0)
bursts = st.integers(min_value=1, max_value=50)
gaps = st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300)
costs = st.sampled_from([1.0, 1.0, 1.0, 2.0, 3.5, 10.0])


@settings(max_examples=150, deadline=None)
@given(
    rate=rates, burst=bursts, steps=st.lists(st.tuples(st.floats(0.0, 0.3), costs), min_size=1, max_size=300)
)
def test_admitted_cost_never_exceeds_burst_plus_rate_times_interval(
    rate: float, burst: int, steps: list[tuple[float, float]]
) -> None:
    """For every interval [t_i, t_j] of admitted requests, their cost is <= burst + rate * (t_j - t_i)."""
    tat, now = 0.0, 0.0
    admitted: list[tuple[float, float]] = []
    for gap, cost in steps:
        now += gap
        tat, answer = gcra.take(tat, now, rate, float(burst), min(cost, float(burst)))
        if answer.allowed:
            admitted.append((now, min(cost, float(burst))))
    for i in range(len(admitted)):
        total = 0.0
        for j in range(i, len(admitted)):
            total += admitted[j][1]
            assert total <= burst + rate * (admitted[j][0] - admitted[i][0]) + 1e-6


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(min_value=1.0, max_value=100.0), burst=st.integers(2, 50), jitter=st.floats(0.0, 0.9))
def test_a_saturating_client_gets_at_least_99_percent_of_its_rate(
    rate: float, burst: int, jitter: float
) -> None:
    """A client asking five times its rate for a long run is admitted >= 99 % of rate x duration
    (a bucket of 2 or more banks the time between arrivals)."""
    tat, now, admitted = 0.0, 0.0, 0
    duration = 1000.0 / rate  # 1000 tokens' worth of time
    step = 1.0 / (rate * 5)
    while now < duration:
        tat, answer = gcra.take(tat, now, rate, float(burst))
        admitted += answer.allowed
        now += step * (1.0 + jitter * ((admitted % 3) - 1) / 2)
    assert admitted >= 0.99 * rate * duration
    assert admitted <= burst + rate * duration + 1


@settings(max_examples=100, deadline=None)
@given(rate=rates, burst=bursts, cost=costs)
def test_a_refused_take_says_when_to_retry_and_retrying_then_succeeds(
    rate: float, burst: int, cost: float
) -> None:
    """retry_after is exactly when the refused cost becomes available."""
    cost = min(cost, float(burst))
    tat, now = 0.0, 100.0
    while True:
        new_tat, answer = gcra.take(tat, now, rate, float(burst), cost)
        if not answer.allowed:
            break
        tat = new_tat
    assert answer.retry_after > 0 and answer.remaining < cost
    assert not gcra.take(tat, now + answer.retry_after * 0.98 - 1e-6, rate, float(burst), cost)[1].allowed
    assert gcra.take(tat, now + answer.retry_after + 1e-7, rate, float(burst), cost)[1].allowed


@settings(max_examples=100, deadline=None)
@given(rate=rates, burst=bursts, back=st.floats(min_value=0.0, max_value=1e6))
def test_a_backwards_clock_step_locks_out_for_at_most_one_burst(rate: float, burst: int, back: float) -> None:
    """After the clock steps back, the client waits at most burst/rate, never the size of the step."""
    tat, now = 0.0, 1e6
    for _ in range(burst):
        tat, _answer = gcra.take(tat, now, rate, float(burst))
    now -= back
    _, answer = gcra.take(tat, now, rate, float(burst))
    assert answer.retry_after <= burst / rate + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=rates, burst=bursts, forward=st.floats(min_value=0.0, max_value=1e6))
def test_a_forward_clock_step_refills_to_burst_and_no_more(rate: float, burst: int, forward: float) -> None:
    """However far the clock jumps ahead, the next run admits at most `burst` at once."""
    tat, now = 0.0, 0.0
    now += forward
    admitted = 0
    for _ in range(burst + 5):
        tat, answer = gcra.take(tat, now, rate, float(burst))
        admitted += answer.allowed
    assert admitted == burst


def test_costs_weigh_requests() -> None:
    """A cost-10 request takes ten tokens: one fits in a burst of 10, a second does not."""
    tat, first = gcra.take(0.0, 0.0, 1.0, 10.0, 10.0)
    _, second = gcra.take(tat, 0.0, 1.0, 10.0, 1.0)
    assert first.allowed and first.remaining == 0.0
    assert not second.allowed and abs(second.retry_after - 1.0) < 1e-9


def test_embedded_store_keeps_one_bucket_per_key_on_its_clock() -> None:
    """Keys are independent; the injected clock refills; peek does not debit; idle keys are listed."""
    now = [0.0]
    store = EmbeddedStore(clock=lambda: now[0])
    limit = Limit(rate=1.0, burst=2.0)
    assert [store.take("a", limit).allowed for _ in range(3)] == [True, True, False]
    assert store.take("b", limit).allowed
    assert store.peek("a", limit).remaining == 0.0
    assert store.peek("a", limit).remaining == 0.0
    now[0] = 1.0
    assert store.take("a", limit).allowed
    assert {b["key"] for b in store.snapshot()} == {"a", "b"}
