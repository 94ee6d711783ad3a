"""The chaos runner's counts of what reached the simulator survive the simulator's restarts."""

from __future__ import annotations

from typing import Any

from chaos.observe import Tallies
from chaos.sim.recorder import Recorder


def state(epoch: str, users: dict[str, int], reviews: int = 0) -> dict[str, Any]:
    return {"epoch": epoch, "users": {u: {"requests": n} for u, n in users.items()},
            "totals": {"tokenReviews": reviews, "unauthenticated": 0}}


def test_counts_before_a_restart_are_kept_and_nothing_goes_negative() -> None:
    """50 requests counted, the simulator restarts (counts from zero, new epoch), 7 more: 57."""
    tallies = Tallies(state("a", {"app": 10, "informer": 100}, reviews=1))
    tallies.absorb(state("a", {"app": 60, "informer": 100}, reviews=2))
    tallies.absorb({})  # the simulator is down: no answer
    tallies.absorb(state("b", {"app": 7}))
    assert tallies.per("user/") == {"app": 57}
    assert tallies.total("tokenreviews") == 1


def test_a_recorder_reset_changes_its_epoch() -> None:
    """The state tells readers when its counts started again from zero."""
    recorder = Recorder()
    recorder.request("app", "get")
    first = recorder.state()
    recorder.reset()
    assert first["epoch"] != recorder.state()["epoch"]
    tallies = Tallies(first)
    recorder.request("app", "get")
    tallies.absorb(recorder.state())
    assert tallies.per("user/") == {"app": 1}
