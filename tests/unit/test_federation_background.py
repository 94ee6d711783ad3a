"""Background loops stop for certain, even when a library swallows one cancellation."""

import asyncio

from guard.federation import background


async def test_a_loop_that_swallows_a_cancellation_is_stopped_anyway() -> None:
    """A task that eats its first CancelledError (as redis-py's cluster client can) still ends."""
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(background.stop([task]), timeout=5)
    assert task.cancelled() and swallowed == 1
