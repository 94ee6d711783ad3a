"""The fleet simulation's arithmetic: Redis's CPU split into a price per lease call and per key from
two loads, and the projection sizing leases as guard does (burst/2N over the whole fleet, at most one
call per tick per process)."""

from __future__ import annotations

import pytest

from chaos.fleet import Phase
from chaos.fleet_load import Tally
from chaos.fleet_measure import RedisDelta
from chaos.fleet_report import Costs, Fleet, lease_prices, project


def phase(cpu: float, calls: float, keys: float, seconds: float = 10.0) -> Phase:
    return Phase("steady", seconds, RedisDelta(cpu=cpu * seconds, calls={}), calls * seconds, keys * seconds,
                 0.0, Tally())


IDLE = phase(0.010, 0, 0)


def test_two_loads_give_the_price_of_a_call_and_of_a_key() -> None:
    """CPU = 100 us per call + 20 us per key: many keys per call and one key per call recover both."""
    many = phase(0.010 + 200 * 100e-6 + 1000 * 20e-6, 200, 1000)
    one = phase(0.010 + 60 * 100e-6 + 60 * 20e-6, 60, 60)
    a, b, how = lease_prices(IDLE, [many, one])
    assert (round(a * 1e6), round(b * 1e6), how) == (100, 20, "fitted")


def test_a_negative_price_is_zero_and_the_other_explains_it_all() -> None:
    """Calls alone explain the CPU (the keys would come out negative): keys are free, calls priced."""
    many = phase(0.010 + 200 * 120e-6, 200, 1000)
    one = phase(0.010 + 60 * 125e-6, 60, 60)
    a, b, how = lease_prices(IDLE, [many, one])
    assert b == 0 and 115e-6 < a < 125e-6 and how.startswith("fitted; the keys add nothing")


COSTS = Costs(fixed_call=40e-6, background=2.0, health=1.0, per_call=100e-6, per_key=0.0, fitted="fitted",
              tick=0.040, lease_ttl=0.250)


@pytest.mark.parametrize(("fleet", "size", "calls"), [
    # 9 processes x 20 tenants at 900/s: 5/s per key, a lease of 1.25 tokens, one call per tick each.
    (Fleet(100, 900, 34, 5.0), 1.25, 9 / 0.040),
    # One process per replica, 100,000/s: burst 15,000 over N = 300 caps a lease at 25 tokens, and a
    # key wanting 333/s re-leases more often than ticks come: every process calls every tick.
    (Fleet(100, 100_000, 1, 5.0), 25.0, 300 / 0.040),
    # 1,000 clusters one per process: burst 1,500 over N = 3,000 leaves 1 token a lease.
    (Fleet(1000, 100_000, 1, 5.0), 1.0, 3000 / 0.040),
])
def test_leases_are_sized_as_guard_sizes_them(fleet: Fleet, size: float, calls: float) -> None:
    projected = project(COSTS, fleet)
    assert projected.lease_size == pytest.approx(size)
    assert projected.lease_calls == pytest.approx(calls)
    assert projected.other_calls == pytest.approx(fleet.processes * 2.0 + fleet.clusters * 3 * 1.0)
