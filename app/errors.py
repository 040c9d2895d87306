"""One error tree, one JSON shape: ``{"error": {"code", "message", "details"}}``.

The same codes are reused as WebSocket close reasons by the real-time channel.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    status = 400
    code = "bad_request"
    message = "The request could not be understood."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details
        if code:
            self.code = code
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "A valid API token is required."


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "This token may not do that."


class NotFound(ApiError):
    status, code, message = 404, "not_found", "No such resource."


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed."


class Conflict(ApiError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class Unprocessable(ApiError):
    status, code, message = 422, "validation_failed", "The request body is not valid."


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests; retry later."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, details={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)})


class Unavailable(ApiError):
    status, code, message = 503, "unavailable", "The service is briefly unavailable; retry soon."

    def __init__(self, retry_after: int = 2, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def plain_message(message: str) -> str:
    """Pydantic's message without its "Value error, " / "Assertion failed, " prefix: our own
    validators already say what is wrong in plain words."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def from_validation_error(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> Unprocessable:
    """Pydantic errors as a 422 whose details name each failing field by its dotted path."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: list[str | int] = []
        for part in (*prefix, *err["loc"]):
            # tagged unions repeat the tag (``text.text.content``); show it once
            if not (loc and isinstance(part, str) and loc[-1] == part):
                loc.append(part)
        problems.append({"field": ".".join(str(p) for p in loc), "message": plain_message(err["msg"])})
    first = problems[0]["field"] if problems else "body"
    label = first or "body"
    return Unprocessable(f"Invalid field: {label}", details=problems)
