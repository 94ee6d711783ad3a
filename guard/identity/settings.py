"""guard.yaml's `identity:` section: token caching, review budgets and impersonation bounds.

Keys are those docs/running.md documents (`tokenReviewTTL`, `failureTTL`, `cacheSize`, ...); the
spellings earlier versions accepted (`tokenReviewTtl`, snake_case) still are. Every other key is an
error naming `identity.key`. Pure: plain data in, values and problems out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guard.config import checks as check
from guard.config.checks import Report
from guard.config.paths import FieldPath, dotted
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
_KNOWN = {**_KEYS, **_OLD_SPELLINGS, **{v: v for v in _KEYS.values()}}


def parse_identity(raw: object, where: str) -> tuple[IdentitySettings, list[str]]:
    """The `identity:` settings section, and every problem in it, each naming `where.field`.

    Read with guard.config.checks, as the admission section and policy files are; on problems the
    settings returned are defaults.
    """
    problems: list[str] = []

    def report(path: FieldPath, message: str) -> None:
        problems.append(f"{where}.{dotted(path)}: {message}" if path else f"{where}: {message}")

    if raw is None:
        return IdentitySettings(), []
    section = check.fields(raw, (), report, allowed=set(_KNOWN))
    if section is None:
        return IdentitySettings(), problems
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _KNOWN:
            continue  # reported by check.fields
        parsed = _FIELDS[_KNOWN[key]](value, (key,), report)
        if parsed is not None:
            values[_KNOWN[key]] = parsed
    return (IdentitySettings(**values) if not problems else IdentitySettings()), problems


def _seconds(value: object, path: FieldPath, report: Report) -> float | None:
    seconds = check.duration(value, path, report)
    if seconds is not None and seconds < 0:
        report(path, "must not be negative")
        return None
    return seconds


def _count(value: object, path: FieldPath, report: Report) -> int | None:
    count = check.number(value, path, report, minimum=1, integer=True)
    return None if count is None else int(count)


def _audiences(value: object, path: FieldPath, report: Report) -> tuple[str, ...] | None:
    found = check.texts(value, path, report, empty_ok=True)
    if found is not None and not all(found):
        report(path, "must be a list of non-empty strings")
        return None
    return found


def _rate(value: object, path: FieldPath, report: Report, default: Rate) -> Rate | None:
    """`{rate: 5/s, burst: 20}`; burst defaults to the rate's one second (at least 1)."""
    fields = check.fields(value, path, report, allowed={"rate", "burst"})
    if fields is None:
        return None
    per_second = check.rate(fields["rate"], (*path, "rate"), report) if "rate" in fields else default.rate
    burst = check.number(fields["burst"], (*path, "burst"), report, minimum=1) if "burst" in fields else None
    if per_second is None or ("burst" in fields and burst is None):
        return None
    return Rate(per_second, burst if burst is not None else max(1.0, per_second))


def _budget(value: object, path: FieldPath, report: Report) -> ReviewBudgetSettings | None:
    fields = check.fields(value, path, report, allowed={"perClient", "overall"})
    if fields is None:
        return None
    d = ReviewBudgetSettings()
    rates = {key: _rate(fields[key], (*path, key), report, default) if key in fields else default
             for key, default in (("perClient", d.per_client), ("overall", d.overall))}
    return ReviewBudgetSettings(rates["perClient"] or d.per_client, rates["overall"] or d.overall)


_IMPERSONATION_KEYS = {"maxGroups": "max_groups", "maxExtraValues": "max_extra_values",
                       "maxReviewsPerRequest": "max_reviews_per_request", "perCaller": "per_caller"}


def _impersonation(value: object, path: FieldPath, report: Report) -> ImpersonationSettings | None:
    fields = check.fields(value, path, report, allowed=set(_IMPERSONATION_KEYS))
    if fields is None:
        return None
    d = ImpersonationSettings()
    values: dict[str, Any] = {}
    for key, name in _IMPERSONATION_KEYS.items():
        if key in fields:
            parsed = (_rate(fields[key], (*path, key), report, d.per_caller) if name == "per_caller"
                      else _count(fields[key], (*path, key), report))
            if parsed is not None:
                values[name] = parsed
    return ImpersonationSettings(**values)


_FIELDS: dict[str, Callable[[object, FieldPath, Report], Any]] = {
    "token_review_ttl": _seconds, "failure_ttl": _seconds, "cache_size": _count,
    "failure_cache_size": _count, "jwks": check.flag, "anonymous": check.flag, "audiences": _audiences,
    "review_budget": _budget, "impersonation": _impersonation,
}
