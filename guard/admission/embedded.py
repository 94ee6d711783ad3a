"""`EmbeddedStore`: the in-process `QuotaStore`, GCRA state in a dict, for one guard replica.

The clock is injected (monotonic seconds). Never blocks, never awaits, never does I/O. Buckets
that have refilled completely are forgotten now and then, so idle keys cost no memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from guard.admission import gcra
from guard.admission.store import Limit, Take

_SWEEP_EVERY = 4096


class _Bucket:
    __slots__ = ("limit", "tat")

    def __init__(self, tat: float, limit: Limit) -> None:
        self.tat = tat
        self.limit = limit


class EmbeddedStore:
    """Token buckets in a dict: key -> (TAT, the Limit it was last taken with)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._takes = 0

    def take(self, key: str, limit: Limit, cost: float = 1.0) -> Take:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(now, limit)
        bucket.tat, answer = gcra.take(bucket.tat, now, limit.rate, limit.burst, cost)
        bucket.limit = limit
        self._takes += 1
        if self._takes % _SWEEP_EVERY == 0:
            self._sweep(now)
        return answer

    def peek(self, key: str, limit: Limit) -> Take:
        now = self._clock()
        bucket = self._buckets.get(key)
        return gcra.peek(bucket.tat if bucket else now, now, limit.rate, limit.burst)

    def snapshot(self) -> list[dict[str, object]]:
        """Every live bucket: key, rate, burst, remaining tokens, seconds until full."""
        out: list[dict[str, object]] = []
        for key, bucket in sorted(self._buckets.items()):
            state = self.peek(key, bucket.limit)
            out.append(
                {
                    "key": key,
                    "rate": bucket.limit.rate,
                    "burst": bucket.limit.burst,
                    "remaining": round(state.remaining, 3),
                    "resetAfter": round(state.reset_after, 3),
                }
            )
        return out

    def _sweep(self, now: float) -> None:
        self._buckets = {k: v for k, v in self._buckets.items() if v.tat > now}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
