"""Kubernetes `Status` bodies and the one exception type that carries them to the client.

Every error the simulator answers is built here, shaped exactly like the api-server's. It must never
put a traceback, a token or a Python repr into a body.
"""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
    }
    if details is not None:
        body["details"] = _details(details)
    body["code"] = code
    return body


_DETAIL_ORDER = ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")


def _details(details: dict[str, Any]) -> dict[str, Any]:
    """StatusDetails in Go's field order, empty strings omitted as Go's omitempty does."""
    ordered = {k: details[k] for k in _DETAIL_ORDER if k in details and details[k] not in ("", None)}
    ordered.update({k: v for k, v in details.items() if k not in _DETAIL_ORDER})
    return ordered


def success_body(details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


class StatusError(Exception):
    """An error answered as a `Status` with this HTTP code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, message, reason=reason, details=details)
        self.headers = headers or {}


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        404,
        f'{_qualified(resource, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        f'{_qualified(resource, group)} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": resource},
    )


def conflict(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, field: str, detail: str) -> StatusError:
    return StatusError(
        422,
        f'{kind}.{group or "core"} "{name}" is invalid: {field}: {detail}'.replace(".core", ""),
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        },
    )


def invalid_fields(kind: str, group: str, name: str, errors: list[tuple[str, str]]) -> StatusError:
    """422 for several fields at once: `Pod "x" is invalid: [a: Required value, b: Required value]`."""
    listed = [f"{field}: {detail}" for field, detail in errors]
    joined = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return StatusError(
        422,
        f'{qualified} "{name}" is invalid: {joined}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": "FieldValueRequired" if d == "Required value" else "FieldValueInvalid",
                 "message": d, "field": f}
                for f, d in errors
            ],
        },
    )  # fmt: skip


def expired(message: str) -> StatusError:
    return StatusError(410, message, reason="Expired")


def bad_request(message: str) -> StatusError:
    return StatusError(400, message)
