"""A freshly (re)started simulated replica serves LISTs cold (more time, more memory) for a while,
and the relist-storm scenario relies on exactly that: warm replicas bear the informers' herd, cold
ones fall over."""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pytest

from chaos import bed, scenario
from chaos.sim import cli
from chaos.sim.kinds import TABLE
from chaos.sim.options import SimOptions
from chaos.sim.overload import ReplicaCrashed, ReplicaLoad
from chaos.sim.simulation import Simulation

KIB = 1024


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The service times the replica asked to sleep, without sleeping."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr("chaos.sim.overload.asyncio.sleep", record)
    return asked


async def test_a_cold_replica_charges_the_factor_in_time_and_memory(slept: list[float]) -> None:
    """The same 400 KiB LIST fits a 1 MiB budget warm and crashes the replica cold (x3)."""
    warm = ReplicaLoad(0, SimOptions(memory_budget_mb=1.0, cold_start_s=0.0, cold_list_factor=3.0))
    await warm.serve_list(100, 400 * KIB)
    assert warm.up and warm.crashes == 0 and warm.list_bytes == 0
    cold = ReplicaLoad(0, SimOptions(memory_budget_mb=1.0, cold_start_s=3600.0, cold_list_factor=3.0))
    with pytest.raises(ReplicaCrashed):
        await cold.serve_list(100, 400 * KIB)
    assert not cold.up and cold.crashes == 1 and cold.list_bytes == 0
    small = ReplicaLoad(0, SimOptions(cold_start_s=3600.0, cold_list_factor=3.0))
    await small.serve_list(100, KIB)
    assert slept == [pytest.approx(warm.service_seconds("readonly", 100)), pytest.approx(slept[0] * 3)]


def test_the_cold_window_ends_and_every_restart_opens_it_again() -> None:
    """Factor 3 within cold_start_s of a start, 1 after it, 3 again once the replica comes back."""
    load = ReplicaLoad(0, SimOptions(cold_start_s=5.0, cold_list_factor=3.0))
    assert load.list_factor() == 3.0
    load.started = time.monotonic() - 6.0
    assert load.list_factor() == 1.0
    load.mark_crashed()
    load.mark_up()
    assert load.list_factor() == 3.0


def test_default_replicas_are_always_warm() -> None:
    load = ReplicaLoad(0, SimOptions(cold_list_factor=3.0))
    assert load.list_factor() == 1.0


def _sim_options(s: scenario.Scenario) -> SimOptions:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = bed.sim_args(s, Path("tokens.csv"), Path("bootstrap.yaml"))
    return cli.options_from(parser.parse_args([*argv, "--replicas", str(s.cluster.replicas)]))


def test_relist_storm_starts_warm_and_only_cold_replicas_overflow() -> None:
    """The flood starts after the cold window (full and --short), a warm replica's seats full of
    namespace LISTs stay under the memory budget and the same seats served cold do not."""
    s = scenario.load("relist-storm")
    options = _sim_options(s)
    assert 0 < options.cold_start_s < s.shortened().baseline_s <= s.baseline_s
    sim = Simulation.from_options(dataclasses.replace(options, token_file=None, bootstrap=None))
    pods = TABLE.lookup("", "v1", "pods")
    assert pods is not None
    items = [obj for _, obj in sim.store.items(pods, "seed-0")]
    body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
    seats_full = options.max_readonly_inflight * len(body)
    budget = options.memory_budget_mb * KIB * KIB
    assert seats_full < budget < seats_full * options.cold_list_factor
