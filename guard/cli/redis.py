"""What the Redis-backed commands (`guard quarantine`, `guard policy push|show`) share: connect to
the Redis named by `--redis`, run one action, close; 0 on success, 1 with one clear line on stderr
otherwise. It must never print a password.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from guard.federation.config import RedisSettings, parse_redis
from guard.federation.connection import FederationError, Gateway


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _settings(url: str) -> RedisSettings | None:
    settings, problems = parse_redis(url, "--redis")
    if problems:
        fail(problems[0])
        return None
    return RedisSettings(url=settings.url, timeout=2.0, pool_size=2)


def with_gateway(url: str, action: Callable[[Gateway], Awaitable[int]]) -> int:
    settings = _settings(url)
    if settings is None:
        return 1

    async def go() -> int:
        gateway = Gateway(settings)
        try:
            return await action(gateway)
        except FederationError as e:
            return fail(e.message)
        finally:
            await gateway.close()

    return asyncio.run(go())
