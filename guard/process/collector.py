"""The garbage collector in a serving process: what was built at start is frozen out of its
collections, and young collections run less often.

Every request allocates a few hundred short-lived objects (parsed heads, header lists, coroutines,
tasks); with CPython's default threshold (700) a young collection ran every few requests and each
one walked the requests in flight. `settle()`, once the process is built and before it serves,
collects what start-up left, moves every surviving object (settings, compiled policies, modules)
to the permanent generation, where no collection walks it again, and raises the young threshold to
`YOUNG`. Garbage without cycles is freed by reference counting as before; a cycle now waits at most
`YOUNG` allocations. `thaw()` hands the frozen objects back to the collector (a reload retires the
runtime built at start, whose cycles must be collectable).
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations (minus deallocations) of container objects between two young collections."""


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)


def thaw() -> None:
    gc.unfreeze()
