"""Stopping the federation's background loops for certain.

A loop's task may be cancelled while it is inside a redis-py call, and redis-py's cluster client
(or `asyncio.timeout` racing the cancel on Python 3.11) can swallow that one cancellation; the loop
then sleeps and runs on, and a plain `cancel(); await gather(...)` waits forever. `stop` cancels
again until the tasks have really ended. It must never leave a task running behind a returned call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

RETRY_EVERY = 0.1
"""Seconds between repeated cancellations of a task that swallowed one."""


async def stop(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait until every one has finished."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RETRY_EVERY)
