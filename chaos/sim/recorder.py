"""An exact record of what reached the simulated api-server, read at `GET /debug/sim/state`.

Counts requests per (effective) user and verb, requests made by impersonators, unauthenticated
requests, and TokenReviews per reviewed user. Tests of the proxy read it to prove what got through,
so every authenticated request is counted exactly once, and reading the record is never counted.
It must never store tokens.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from typing import Any

_EPOCHS = itertools.count(1)


class Recorder:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.epoch = f"{os.getpid()}-{next(_EPOCHS)}"
        """Changes whenever the counts start again from zero (a new process, or a reset), so a
        reader summing counts over time knows when to stop subtracting."""
        self.requests: Counter[str] = Counter()
        self.verbs: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.impersonators: Counter[str] = Counter()
        self.token_reviews: Counter[str] = Counter()
        self.token_reviews_failed = 0
        self.unauthenticated = 0
        self.access_reviews: Counter[str] = Counter()

    def request(self, user: str, verb: str, *, impersonator: str | None = None) -> None:
        self.requests[user] += 1
        self.verbs[user][verb] += 1
        if impersonator is not None:
            self.impersonators[impersonator] += 1

    def rejected(self) -> None:
        """A request whose credentials were missing or wrong (401)."""
        self.unauthenticated += 1

    def token_review(self, reviewed_user: str | None) -> None:
        if reviewed_user is None:
            self.token_reviews_failed += 1
        else:
            self.token_reviews[reviewed_user] += 1

    def access_review(self, reviewed_user: str) -> None:
        """A SubjectAccessReview (or Local one) about `reviewed_user`, e.g. from a proxy."""
        self.access_reviews[reviewed_user] += 1

    def state(self) -> dict[str, Any]:
        users = {u: {"requests": n, "verbs": dict(self.verbs[u])} for u, n in sorted(self.requests.items())}
        return {
            "epoch": self.epoch,
            "totals": {
                "requests": sum(self.requests.values()),
                "unauthenticated": self.unauthenticated,
                "tokenReviews": sum(self.token_reviews.values()) + self.token_reviews_failed,
                "tokenReviewsFailed": self.token_reviews_failed,
                "subjectAccessReviews": sum(self.access_reviews.values()),
            },
            "users": users,
            "impersonators": dict(sorted(self.impersonators.items())),
            "tokenReviews": dict(sorted(self.token_reviews.items())),
            "subjectAccessReviews": dict(sorted(self.access_reviews.items())),
        }
