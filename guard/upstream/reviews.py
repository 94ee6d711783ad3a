"""Reviews guard asks of a cluster (TokenReview, SubjectAccessReview), sent to its least busy
endpoint and tried on the next one when an endpoint fails, so one dead api-server does not fail
identity. Outcomes feed the endpoints' breakers like those of proxied requests. It must never log a
token or a review's body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from guard.identity.authn import HttpReviewClient
from guard.kube.errors import UpstreamError
from guard.upstream.endpoints import Endpoint, Upstream


class FailoverReviews:
    """A ReviewClient that posts TokenReviews/SubjectAccessReviews to the least busy endpoint and
    tries the next one when an endpoint fails, so one dead api-server does not fail identity."""

    def __init__(self, upstream: Upstream, *, timeout: float) -> None:
        headers = upstream.credential.headers
        self._upstream = upstream
        self._clients = {id(ep): HttpReviewClient(ep.session, ep.url, headers, timeout=timeout)
                         for ep in upstream.endpoints}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._each(lambda c: c.create(path, body))

    async def get(self, path: str) -> dict[str, Any]:
        return await self._each(lambda c: c.get(path))

    async def _each(self, call: Callable[[HttpReviewClient], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        tried: list[Endpoint] = []
        error: UpstreamError | None = None
        while (ep := self._upstream.pick(tried)) is not None:
            try:
                answer = await call(self._clients[id(ep)])
            except UpstreamError as e:
                tried.append(ep)
                error = e
                if isinstance(e.__cause__, REVIEW_FAILURES):
                    ep.failed(type(e.__cause__).__name__)
                else:
                    ep.answered()  # an answer, if not a useful one: the endpoint is alive
                continue
            ep.answered()
            return answer
        raise error or UpstreamError(f"cluster {self._upstream.name} has no endpoint")


REVIEW_FAILURES = (aiohttp.ClientConnectionError, TimeoutError)
"""Review errors that say the endpoint, not the review, failed."""


REVIEW_FAILURES = (aiohttp.ClientConnectionError, TimeoutError)
"""Review errors that say the endpoint, not the review, failed."""
