"""Pure parts of federation: settings parsing, the breaker, lease sizing, key tags, bundle signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guard.admission.store import Limit
from guard.federation import bundles
from guard.federation.breaker import Breaker, BreakerConfig
from guard.federation.config import parse_redis
from guard.federation.lease_state import KeyState
from guard.federation.leases import bucket_tag
from guard.federation.membership import STATE_FILE, remembered
from tests.doubles import FakeClock


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("http://x:1", "redis.url: scheme must be one of"),
        ({"url": "redis://x:1", "tik": "40ms"}, 'redis.tik: unknown field "tik" (did you mean "tick"?)'),
        ({"url": "redis://x:1", "tick": "fast"}, 'redis.tick: "fast" is not a duration'),
        ({"url": "redis://x:1", "caFile": "/ca"}, "need a rediss:// URL"),
        ({"url": "rediss://x:1", "certFile": "/c"}, "certFile and keyFile go together"),
        ({"url": "redis://x:1", "cluster": "yes"}, "redis.cluster: must be true or false"),
        ({"url": "redis://x:1", "sentinel": {"master": "m", "addresses": ["nohost"]}},
         "redis.sentinel.addresses[0]: must be host:port"),
        ({"tick": "1s"}, "redis.url: is required"),
        ({"url": "redis://x:1", "expectedReplicas": 0}, "redis.expectedReplicas: must be at least 1"),
        ({"url": "redis://x:1", "expectedReplicas": "3"}, "redis.expectedReplicas: must be an integer"),
        ({"url": "redis://x:1", "stateDir": ""}, "redis.stateDir: must be a non-empty string"),
        ({"url": "redis://x:1", "tick": 0}, "redis.tick: must be a positive duration"),
        (42, "redis: must be a URL string or a mapping"),
    ],
)
def test_bad_redis_settings_are_reported(raw: object, problem: str) -> None:
    """Every malformed `redis:` value yields a problem naming the field."""
    _, problems = parse_redis(raw, "redis")
    assert any(problem in p for p in problems), problems


def test_full_redis_mapping_parses() -> None:
    """A complete mapping becomes typed settings with durations in seconds."""
    settings, problems = parse_redis({
        "url": "rediss://redis.example:6380/1", "caFile": "/ca.pem", "certFile": "/c.pem",
        "keyFile": "/k.pem", "username": "guard", "passwordFile": "/pw", "keyPrefix": "g1:",
        "tick": "25ms", "leaseTTL": "200ms", "timeout": 0.03, "poolSize": 4,
        "publicKey": "/pub.pem", "bundleDir": "/var/lib/guard", "expectedReplicas": 6,
        "stateDir": "/var/lib/guard"}, "redis")
    assert problems == []
    assert settings.expected_replicas == 6 and settings.state_dir == "/var/lib/guard"
    assert (settings.tick, settings.lease_ttl, settings.timeout) == (0.025, 0.2, 0.03)
    assert settings.username == "guard" and settings.pool_size == 4 and settings.key_prefix == "g1:"


def test_sentinel_settings_parse() -> None:
    """Sentinel addresses become (host, port) pairs."""
    settings, problems = parse_redis({"url": "redis://m:6379", "sentinel": {
        "master": "mymaster", "addresses": ["10.0.0.1:26379", "10.0.0.2:26379"]}}, "redis")
    assert problems == [] and settings.sentinel is not None
    assert settings.sentinel.addresses == (("10.0.0.1", 26379), ("10.0.0.2", 26379))


def test_breaker_opens_after_three_failures_and_probes_later() -> None:
    """Three consecutive failures open it; a probe is let through only when due; success closes."""
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    breaker = Breaker(clock, config=BreakerConfig(probe_interval=1.0), jitter=lambda: 0.0,
                      on_change=lambda a, b: changes.append((a, b)))
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 1.0
    assert breaker.allow() and breaker.state == "half-open"
    assert not breaker.allow()  # one probe at a time
    breaker.success()
    assert breaker.state == "closed"
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_breaker_opens_on_error_ratio() -> None:
    """More than half of the calls within the window failing opens it, without 3 in a row."""
    clock = FakeClock()
    breaker = Breaker(clock, config=BreakerConfig(failures=10, min_calls=4))
    for ok in (True, False, True, False, False):
        breaker.success() if ok else breaker.failure()
    assert breaker.state == "open"


def test_failed_probe_reopens() -> None:
    """A failing probe sends the breaker back to open."""
    clock = FakeClock()
    breaker = Breaker(clock, jitter=lambda: 0.0)
    for _ in range(3):
        breaker.failure()
    clock.now += 5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()


@pytest.mark.parametrize(
    ("demand", "burst", "live", "size"),
    [
        (0.0, 100, 1, 1.0),  # idle: one token
        (100.0, 100, 1, 26.0),  # demand x (ttl 0.25 + rtt 0.01)
        (1000.0, 100, 1, 50.0),  # clamped to burst / 2N
        (1000.0, 100, 5, 10.0),  # more replicas, smaller leases
        (1000.0, 1, 4, 1.0),  # never below one token
    ],
)
def test_lease_size(demand: float, burst: float, live: int, size: float) -> None:
    """L = clamp(demand x (ttl + rtt), 1, burst / 2N)."""
    state = KeyState("k", Limit(rate=100, burst=burst), demand=demand)
    assert state.lease_size(live, 0.01, 0.25) == pytest.approx(size)


def test_lease_tokens_lapse_and_refill_at_watermark() -> None:
    """Tokens lapse at the lease's TTL; a refill is wanted below half a lease."""
    state = KeyState("k", Limit(rate=100, burst=100), demand=100.0)
    state.grant(0.0, 26, 26, 0.26, live=1, lease_ttl=0.25)
    assert state.want(0.01, 1, 0.01, 0.25) == 0
    for _ in range(14):
        assert state.spend(0.1, 1)
    assert state.want(0.1, 1, 0.01, 0.25) == 14
    assert not state.spend(0.3, 1)  # lapsed


def test_starter_debt_is_paid_by_the_first_grant() -> None:
    """Starter tokens spent before the first lease are deducted from it."""
    state = KeyState("k", Limit(rate=100, burst=100), tokens=2, credit=2, expires=1.0)
    assert state.spend(0.0, 1) and state.spend(0.0, 1)
    assert (state.credit, state.debt) == (0, 2)
    state.grant(0.01, 10, 10, 0.1, live=1, lease_ttl=0.25)
    assert state.tokens == 8 and state.debt == 0


@pytest.mark.parametrize(
    ("tokens", "credit", "debt", "want"),
    [
        (26, 0, 0, 0),  # a full lease: above the watermark
        (12, 0, 0, 14),  # below half a lease: top it up
        (40, 40, 0, 26),  # living on an unspent starter: ask at once, it is not paid for
        (30, 30, 10, 36),  # ten starter tokens spent: pay them back with the lease
        (0, 0, 3, 29),  # borrowed three between leases
    ],
)
def test_tokens_on_credit_do_not_count_toward_the_watermark(tokens: float, credit: float, debt: float,
                                                           want: int) -> None:
    """Only tokens Redis granted count toward the 50 % watermark; what is owed is asked for too."""
    state = KeyState("k", Limit(rate=100, burst=100), demand=100.0, tokens=tokens, credit=credit,
                     debt=debt, expires=1.0)
    assert state.want(0.5, 1, 0.01, 0.25) == want


def test_unspent_credit_lapses_without_debt() -> None:
    """Starter tokens that lapse unspent are owed to nobody; the spent ones stay owed."""
    state = KeyState("k", Limit(rate=100, burst=100), tokens=4, credit=4, expires=0.25)
    assert state.spend(0.1, 1)
    assert not state.spend(0.3, 1)
    assert (state.tokens, state.credit, state.debt) == (0, 0, 1)


@pytest.mark.parametrize(
    ("key", "tag"),
    [("team-a:reads:alice", "team-a"), ("{t1}x:y", "t1"), ("solo", "solo"), ("a:{b}:c", "b")],
)
def test_bucket_tag(key: str, tag: str) -> None:
    """A tenant's keys share one hash tag, so one Cluster slot."""
    assert bucket_tag(key) == tag


def test_bundle_signature_detects_tampering() -> None:
    """A signed bundle verifies; one changed byte, or another key, is refused."""
    key = Ed25519PrivateKey.generate()
    bundle = bundles.Bundle(3, {"a.yaml": "kind: TenantPolicy\n"}, "now")
    signature = bundles.sign(bundle, key)
    assert bundles.verify(bundle.payload(), signature, key.public_key()) == bundle
    tampered = bundle.payload().replace(b"TenantPolicy", b"TenantPolicz")
    with pytest.raises(bundles.BundleRefused):
        bundles.verify(tampered, signature, key.public_key())
    with pytest.raises(bundles.BundleRefused):
        bundles.verify(bundle.payload(), signature, Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize(
    ("content", "n"),
    [
        (None, 1),  # never written
        ('{"replicas": 4}', 4),
        ('{"replicas": 0}', 1),
        ('{"replicas": true}', 1),
        ('{"replicas": "4"}', 1),
        ("not json", 1),
        ("[]", 1),
    ],
)
def test_remembered_live_count(tmp_path: Path, content: str | None, n: int) -> None:
    """The N a previous run kept in stateDir; anything unreadable counts as none (1)."""
    if content is not None:
        (tmp_path / STATE_FILE).write_text(content)
    assert remembered(str(tmp_path)) == n
