"""guard's own exceptions, and the Kubernetes `Status` bodies every client-visible error becomes.

Adapters (identity, upstream, federation, loading) translate library errors into these at the
boundary (`raise ... from e`). Nothing here may put a token or a certificate into a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict


class StatusDetails(TypedDict, total=False):
    name: str
    kind: str
    group: str
    retryAfterSeconds: int


class Status(TypedDict, total=False):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: str
    reason: str
    details: StatusDetails
    code: int


def status_body(code: int, reason: str, message: str, *, retry_after: int | None = None,
                details: StatusDetails | None = None) -> Status:
    """A `Status` exactly as the api-server writes it for a failure."""
    body: Status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    merged: StatusDetails = dict(details or {})  # type: ignore[assignment]
    if retry_after is not None:
        merged["retryAfterSeconds"] = retry_after
    if merged:
        body["details"] = merged
    return body


class GuardError(Exception):
    """Base of every error guard raises on purpose. Carries what the client is told."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, retry_after: int | None = None,
                 headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = tuple(headers)
        """Extra headers of the answer (a rejection's RateLimit and tenant/rule ids)."""

    def status(self) -> Status:
        return status_body(self.code, self.reason, self.message, retry_after=self.retry_after)


class BadRequest(GuardError):
    code = 400
    reason = "BadRequest"


class HeaderTooLarge(GuardError):
    code = 431
    reason = "RequestHeaderFieldsTooLarge"


class Unauthorized(GuardError):
    code = 401
    reason = "Unauthorized"


class Forbidden(GuardError):
    code = 403
    reason = "Forbidden"


class TooManyRequests(GuardError):
    code = 429
    reason = "TooManyRequests"


class ServiceUnavailable(GuardError):
    code = 503
    reason = "ServiceUnavailable"


class UpstreamError(GuardError):
    """The api-server could not be reached or broke the exchange."""

    code = 502
    reason = "InternalError"


class ConfigError(Exception):
    """Invalid settings or policy files. `problems` lists every error, each naming file and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
