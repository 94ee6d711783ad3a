"""Byte pipes for tunnels (exec, attach, port-forward after an upgrade): what one side's socket
receives is written to the other side's, with flow control, for both the client side
(guard.http.server) and the api-server side (guard.http.client).

It must never interpret, buffer without bound or log the bytes it carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

HIGH_WATER = 1024 * 1024
"""Bytes queued towards one side of a tunnel before reading from the other side pauses."""
LOW_WATER = 256 * 1024
"""Bytes queued below which reading resumes."""


def pipe_bytes(target: asyncio.Transport, data: bytes, pause: Callable[[], None],
               resume: Callable[[], None]) -> bool:
    """Write `data` to `target`; above HIGH_WATER queued there, `pause` the source until `target`
    drains to LOW_WATER, then `resume` it. False when `target` is closing (the tunnel is over)."""
    if target.is_closing():
        return False
    target.write(data)
    if target.get_write_buffer_size() > HIGH_WATER:
        pause()
        asyncio.get_running_loop().create_task(_resume_when_drained(target, resume))
    return True


async def _resume_when_drained(target: asyncio.Transport, resume: Callable[[], None]) -> None:
    # The target's own protocol owns its flow-control callbacks, so poll its buffer instead.
    while not target.is_closing() and target.get_write_buffer_size() > LOW_WATER:
        await asyncio.sleep(0.005)
    resume()
