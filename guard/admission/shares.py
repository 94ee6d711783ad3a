"""`guard serve --workers N` on the embedded store: each worker process enforces `rate/N` and
`burst/N` of every quota, so the sum over workers never exceeds the policy (a client whose
connections all land on one worker gets less than its quota, never more). With Redis the buckets
are global and need no split. Pure: arithmetic over another QuotaStore.
"""

from __future__ import annotations

from guard.admission.store import Limit, QuotaStore, Take


class WorkerShare:
    """A QuotaStore giving each of N workers `rate/N` and `burst/N` of every bucket."""

    def __init__(self, inner: QuotaStore, workers: int) -> None:
        self.inner = inner
        self.workers = workers
        self._parts: dict[Limit, Limit] = {}

    def part(self, limit: Limit) -> Limit:
        share = self._parts.get(limit)
        if share is None:
            # A burst under one token would reject everything, so one token is the floor.
            share = self._parts[limit] = Limit(limit.rate / self.workers,
                                               max(limit.burst / self.workers, 1.0), limit.fail_mode)
        return share

    def take(self, key: str, limit: Limit, cost: float = 1.0) -> Take:
        share = self.part(limit)
        return self.inner.take(key, share, min(cost, share.burst))

    def peek(self, key: str, limit: Limit) -> Take:
        return self.inner.peek(key, self.part(limit))

    def snapshot(self) -> list[dict[str, object]]:
        return self.inner.snapshot()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()
