"""What the fleet simulation reads: Redis's own counters (`INFO cpu`, `INFO commandstats`, keys per
node), the guards' `/metrics`, and how long a change takes to be in force on every replica.

Redis counts commands its functions call as well as the clients' own; a round trip is a command a
client sent, so the commands only guard's Lua functions call (`SCRIPT_ONLY`) and those this module
sends itself (`OBSERVER`) are left out of `round_trips`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import redis

SCRIPT_ONLY = {"del", "get", "hget", "hgetall", "incrby", "pexpire", "set", "time", "zadd", "zcard",
               "zremrangebyscore", "hset", "hdel", "publish"}
"""Commands guard's scripts call. HSET, HDEL and PUBLISH are also sent on their own, but only by
`guard policy push`, `guard quarantine release` and a replica stopping: never in a measured phase."""
OBSERVER = ("info", "dbsize", "cluster", "config", "psubscribe", "punsubscribe", "command")


@dataclass
class RedisNode:
    """One Redis server's counters at one moment."""

    cpu: float
    calls: dict[str, int]
    keys: int


def read_node(port: int) -> RedisNode:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
        keys = int(client.dbsize())
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return RedisNode(float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls, keys)


@dataclass
class RedisDelta:
    """What one or more Redis servers did between two snapshots."""

    cpu: float
    calls: dict[str, int]
    per_node_calls: list[int] = field(default_factory=list)
    per_node_keys: list[int] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return sum(n for name, n in self.calls.items()
                   if name not in SCRIPT_ONLY and not name.startswith(OBSERVER))

    @property
    def fcalls(self) -> int:
        return sum(self.calls.get(name, 0) for name in ("fcall", "evalsha", "eval"))


class RedisWatch:
    """Snapshots of every node of a Redis deployment, and the difference between two of them."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def snapshot(self) -> list[RedisNode]:
        return [read_node(port) for port in self.ports]

    @staticmethod
    def delta(before: list[RedisNode], after: list[RedisNode]) -> RedisDelta:
        calls: dict[str, int] = {}
        per_node = []
        for old, new in zip(before, after, strict=True):
            node_calls = 0
            for name, n in new.calls.items():
                diff = n - old.calls.get(name, 0)
                calls[name] = calls.get(name, 0) + diff
                if name not in SCRIPT_ONLY and not name.startswith(OBSERVER):
                    node_calls += diff
            per_node.append(node_calls)
        return RedisDelta(cpu=sum(n.cpu for n in after) - sum(n.cpu for n in before), calls=calls,
                          per_node_calls=per_node, per_node_keys=[n.keys for n in after])


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a /metrics page, by its full name with labels."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples


class Scraper:
    """Reads the guards' /metrics pages over one shared client session."""

    def __init__(self, admins: list[str]) -> None:
        self.admins = admins
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Scraper:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def one(self, admin: str) -> dict[str, float]:
        assert self.session is not None
        async with self.session.get(f"{admin}/metrics") as resp:
            return parse_metrics(await resp.text())

    async def all(self, admins: Iterable[str] | None = None) -> list[dict[str, float]]:
        return list(await asyncio.gather(*(self.one(a) for a in (admins or self.admins))))

    async def total(self, name: str) -> float:
        """The sum of one unlabelled sample over every guard."""
        return sum(page.get(name, 0.0) for page in await self.all())


ROUNDS: list[float] = []
"""How long each polling round of `until_everywhere` took: the resolution of the times it gives."""


async def until_everywhere(admins: list[str], check: Callable[[str], Awaitable[bool]], *,
                           step: float = 0.02, timeout: float = 20.0) -> list[float]:
    """Poll `check(admin)` on every admin not yet true; the monotonic time each first was true
    (missing ones are `inf`), to within one round (`step` plus the checks, kept in ROUNDS)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(admins) and time.monotonic() < deadline:
        began = time.monotonic()
        waiting = [a for a in admins if a not in seen]
        results = await asyncio.gather(*(check(a) for a in waiting), return_exceptions=True)
        now = time.monotonic()
        for admin, ok in zip(waiting, results, strict=True):
            if ok is True:
                seen[admin] = now
        await asyncio.sleep(step)
        ROUNDS.append(time.monotonic() - began)
    return [seen.get(a, float("inf")) for a in admins]


class Published:
    """The moment a message first appears on each of guard's pub/sub channels (observer side)."""

    def __init__(self, port: int, prefix: str = "guard:") -> None:
        self.client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        self.prefix = prefix
        self.first: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self.client.pubsub()
        await pubsub.psubscribe(f"{self.prefix}*")
        self._task = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                channel = message["channel"].decode()
                self.first.setdefault(channel, time.monotonic())

    def reset(self, channel: str) -> None:
        self.first.pop(self.prefix + channel, None)

    def at(self, channel: str) -> float | None:
        return self.first.get(self.prefix + channel)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.aclose()
