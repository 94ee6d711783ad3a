"""Test doubles shared by the whole test tree. Import: `from tests.doubles import FakeClock`."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock the test moves by hand: call it for the time, set or advance `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """An `asyncio.sleep` that moves this clock instead of waiting."""
        self.now += seconds
