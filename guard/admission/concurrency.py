"""Per-rule caps on what a tenant holds at once: `maxInflight` requests and `maxWatches`
long-running watches, counted per bucket key (so they follow the rule's quota scope).

Pure and synchronous: counters only, no clock, no I/O.
"""

from __future__ import annotations


class InflightCaps:
    """Counters keyed by opaque strings, each bounded by the cap the caller passes."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def try_acquire(self, key: str, cap: int) -> bool:
        held = self._held.get(key, 0)
        if held >= cap:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)  # forget idle keys: memory stays bounded by what is in flight

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._held.items()))
