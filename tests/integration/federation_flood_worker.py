"""One guard replica's quota store flooding one shared key; prints a JSON summary (used by tests).

Usage: python federation_flood_worker.py URL REPLICA START_AT SECONDS RATE BURST OFFERED_PER_S
START_AT is a time.time() at which every worker starts, so the floods overlap exactly.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from guard.admission.store import Limit
from guard.federation.config import parse_redis
from guard.federation.leases import build_store


async def main(url: str, replica: str, start_at: float, seconds: float, rate: float, burst: float,
               offered: float) -> None:
    settings, _ = parse_redis(url, "redis")
    store = await build_store(settings, replica_id=replica, cluster="flood")
    await store.start()
    limit = Limit(rate=rate, burst=burst)
    while store.live < 3 and time.time() < start_at:
        await store.membership.beat()
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    admitted = offered_count = 0
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        due = int(elapsed * offered) - offered_count
        for _ in range(due):
            admitted += store.take("fleet:reads:all", limit).allowed
        offered_count += due
        await asyncio.sleep(0.005)
    print(json.dumps({"admitted": admitted, "offered": offered_count, "live": store.live,
                      "lease_calls": store.stats.lease_calls}))
    await store.close()


if __name__ == "__main__":
    url, replica, start_at, seconds, rate, burst, offered = sys.argv[1:8]
    asyncio.run(main(url, replica, float(start_at), float(seconds), float(rate), float(burst),
                     float(offered)))
