"""What every property-based fuzzer of guard shares: how hard it tries, and a test bed that runs
guard in-process on an event loop of its own, so that a synchronous hypothesis test can drive it
with plain sockets.

A fuzzer is a test marked `@pytest.mark.fuzz` and decorated with `@FUZZ`. `make test` runs each
briefly (`GUARD_FUZZ_EXAMPLES`, default 40 examples); `make fuzz` runs only the fuzzers, with
`GUARD_FUZZ_EXAMPLES=3000` unless told otherwise. Import: `from tests.fuzzing import FUZZ, LoopThread`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

EXAMPLES = int(os.environ.get("GUARD_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
"""The settings of every fuzzer: few examples, always the same ones, in `make test` (a failure there
is reproducible); many and fresh ones in `make fuzz`. No deadline: the tests run real sockets."""


class LoopThread:
    """An event loop on a thread of its own, for servers a synchronous test talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
