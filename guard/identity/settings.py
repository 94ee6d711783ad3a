"""guard.yaml's `identity:` section: token caching, review budgets and impersonation bounds.

Keys are those docs/running.md documents (`tokenReviewTTL`, `failureTTL`, `cacheSize`, ...); the
spellings earlier versions accepted (`tokenReviewTtl`, snake_case) still are. Every other key is an
error naming `identity.key`. Pure: plain data in, values and problems out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.config.durations import parse_duration, parse_rate
from guard.identity.budget import Rate

PER_CLIENT = Rate(5.0, 20.0)
OVERALL = Rate(100.0, 200.0)
PER_CALLER = Rate(5.0, 50.0)


@dataclass(frozen=True)
class ReviewBudgetSettings:
    """TokenReviews of tokens guard has not seen (`identity.reviewBudget`)."""

    per_client: Rate = PER_CLIENT
    """Per client address (`perClient`): 5/s, burst 20."""
    overall: Rate = OVERALL
    """All clients together (`overall`): 100/s, burst 200."""


@dataclass(frozen=True)
class ImpersonationSettings:
    """Bounds on the SubjectAccessReviews one `Impersonate-*` request costs (`identity.impersonation`)."""

    max_groups: int = 32
    """Most Impersonate-Group headers (`maxGroups`); more is a 400."""
    max_extra_values: int = 32
    """Most Impersonate-Extra-* values, all keys together (`maxExtraValues`); more is a 400."""
    max_reviews_per_request: int = 16
    """Most reviews one request may cause (`maxReviewsPerRequest`); one needing more gets 429 and,
    with the first answers cached, gets further on its retry."""
    per_caller: Rate = PER_CALLER
    """Reviews per impersonating caller (`perCaller`): 5/s, burst 50; then 429."""


@dataclass(frozen=True)
class IdentitySettings:
    token_review_ttl: float = 120.0
    """Seconds a successful token answer is reused. Longer means fewer reviews, slower revocation."""
    failure_ttl: float = 10.0
    """Seconds an invalid token's rejection is reused, so a retrying client cannot flood reviews."""
    cache_size: int = 10000
    """Most valid tokens remembered at once (least recently used go first). Only tokens the
    api-server accepted enter it, so garbage tokens can never push a good one out."""
    failure_cache_size: int = 10000
    """Most rejected tokens remembered at once, in a cache of their own."""
    jwks: bool = False
    """Verify service-account JWTs locally against the cluster's JWKS instead of a TokenReview."""
    anonymous: bool = False
    """Callers without credentials become system:anonymous instead of getting 401."""
    audiences: tuple[str, ...] = ()
    """Audiences tokens must carry; empty means the cluster's default (its issuer)."""
    review_budget: ReviewBudgetSettings = field(default_factory=ReviewBudgetSettings)
    impersonation: ImpersonationSettings = field(default_factory=ImpersonationSettings)


_KEYS = {
    "tokenReviewTTL": "token_review_ttl", "failureTTL": "failure_ttl", "cacheSize": "cache_size",
    "failureCacheSize": "failure_cache_size", "jwks": "jwks", "anonymous": "anonymous",
    "audiences": "audiences", "reviewBudget": "review_budget", "impersonation": "impersonation",
}
_OLD_SPELLINGS = {"tokenReviewTtl": "token_review_ttl", "failureTtl": "failure_ttl"}
Problems = list[str]


def parse_identity(raw: object, where: str) -> tuple[IdentitySettings, list[str]]:
    """The `identity:` settings section, and every problem in it, each naming `where.field`."""
    if raw is None:
        return IdentitySettings(), []
    if not isinstance(raw, dict):
        return IdentitySettings(), [f"{where}: must be a mapping"]
    known = {**_KEYS, **_OLD_SPELLINGS, **{v: v for v in _KEYS.values()}}
    values: dict[str, Any] = {}
    problems: Problems = []
    for key, value in raw.items():
        name = known.get(key)
        if name is None:
            problems.append(f"{where}.{key}: unknown field")
            continue
        parsed = _FIELDS[name](value, f"{where}.{key}", problems)
        if parsed is not None:
            values[name] = parsed
    return (IdentitySettings(**values) if not problems else IdentitySettings()), problems


def _seconds(value: object, at: str, problems: Problems) -> float | None:
    seconds = parse_duration(value)
    if seconds is None:
        problems.append(f"{at}: must be a number of seconds >= 0 or a duration like 30s, 2m")
    return seconds


def _count(value: object, at: str, problems: Problems) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    problems.append(f"{at}: must be a positive integer")
    return None


def _flag(value: object, at: str, problems: Problems) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.append(f"{at}: must be true or false")
    return None


def _audiences(value: object, at: str, problems: Problems) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    problems.append(f"{at}: must be a list of non-empty strings")
    return None


def _rate(value: object, at: str, problems: Problems, default: Rate) -> Rate | None:
    """`{rate: 5/s, burst: 20}`; burst defaults to the rate's one second (at least 1)."""
    fields = _mapping(value, at, problems, {"rate", "burst"})
    if fields is None:
        return None
    rate = parse_rate(fields["rate"]) if isinstance(fields.get("rate"), str) else None
    if "rate" in fields and rate is None:
        problems.append(f"{at}.rate: must be a rate like 5/s, 300/m")
    burst = fields.get("burst")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int | float) or burst < 1):
        problems.append(f"{at}.burst: must be a number >= 1")
        return None
    per_second = rate if rate is not None else default.rate
    return Rate(per_second, float(burst) if burst is not None else max(1.0, per_second))


def _mapping(value: object, at: str, problems: Problems, allowed: set[str]) -> Mapping[str, Any] | None:
    if not isinstance(value, dict):
        problems.append(f"{at}: must be a mapping")
        return None
    unknown = [k for k in value if k not in allowed]
    problems.extend(f"{at}.{k}: unknown field" for k in unknown)
    return None if unknown else value


def _budget(value: object, at: str, problems: Problems) -> ReviewBudgetSettings | None:
    fields = _mapping(value, at, problems, {"perClient", "overall"})
    if fields is None:
        return None
    d = ReviewBudgetSettings()
    rates = {key: _rate(fields[key], f"{at}.{key}", problems, default) if key in fields else default
             for key, default in (("perClient", d.per_client), ("overall", d.overall))}
    return ReviewBudgetSettings(rates["perClient"] or d.per_client, rates["overall"] or d.overall)


_IMPERSONATION_KEYS = {"maxGroups": "max_groups", "maxExtraValues": "max_extra_values",
                       "maxReviewsPerRequest": "max_reviews_per_request", "perCaller": "per_caller"}


def _impersonation(value: object, at: str, problems: Problems) -> ImpersonationSettings | None:
    fields = _mapping(value, at, problems, set(_IMPERSONATION_KEYS))
    if fields is None:
        return None
    d = ImpersonationSettings()
    values: dict[str, Any] = {}
    for key, name in _IMPERSONATION_KEYS.items():
        if key in fields:
            parsed = (_rate(fields[key], f"{at}.{key}", problems, d.per_caller) if name == "per_caller"
                      else _count(fields[key], f"{at}.{key}", problems))
            if parsed is not None:
                values[name] = parsed
    return ImpersonationSettings(**values)


_FIELDS: dict[str, Callable[[object, str, Problems], Any]] = {
    "token_review_ttl": _seconds, "failure_ttl": _seconds, "cache_size": _count,
    "failure_cache_size": _count, "jwks": _flag, "anonymous": _flag, "audiences": _audiences,
    "review_budget": _budget, "impersonation": _impersonation,
}
