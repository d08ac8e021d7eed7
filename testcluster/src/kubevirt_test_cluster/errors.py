"""Kubernetes ``Status`` errors, shaped like the real API server's.

Clients decide what to do from the HTTP code *and* the ``Status`` body: kr8s raises
``NotFoundError`` on 404, kubectl prints ``Error from server (NotFound): pods "x" not found``
from ``reason`` and ``message``. kmock answers with its own reasons ("Object Not Found") and a
traceback in ``details``, which no real client ever sees; the test cluster answers with the
exact reasons and message formats of the real API server so that error handling is tested
against what production will send.
"""

from __future__ import annotations

from typing import Any

# HTTP code -> the Kubernetes ``StatusReason`` the API server uses for it.
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

# Messages the API server writes for errors that carry no specific text.
GENERIC_MESSAGES: dict[int, str] = {
    401: "Unauthorized",
    403: "forbidden: the server does not allow access to the requested resource",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    410: "the resourceVersion for the provided list is too old",
    429: "Too many requests, please try again later.",
    500: 'Internal error occurred: an error on the server ("") has prevented the request from succeeding',
    503: "the server is currently unable to handle the request",
    504: (
        "the server was unable to return a response in the time allotted, "
        "but may still be processing the request"
    ),
}


class ApiError(Exception):
    """An error answered as a ``kind: Status`` body with a matching HTTP code."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message if message is not None else GENERIC_MESSAGES.get(code, f"HTTP {code}")
        self.reason = reason if reason is not None else REASONS.get(code, "Unknown")
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    def status(self) -> dict[str, Any]:
        """The ``Status`` object exactly as the API server serialises it."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified(plural: str, group: str) -> str:
    """``pods`` for the core group, ``deployments.apps`` elsewhere (as in API messages)."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, f'{qualified(plural, group)} "{name}" not found', details=_details(plural, group, name)
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    message = f'{qualified(plural, group)} "{name}" already exists'
    return ApiError(409, message, reason="AlreadyExists", details=_details(plural, group, name))


def conflict(plural: str, group: str, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": '
        "the object has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, message, details=_details(plural, group, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(kind: str, group: str, name: str, message: str) -> ApiError:
    qualified_kind = f"{kind}.{group}" if group else kind
    return ApiError(
        422, f'{qualified_kind} "{name}" is invalid: {message}', details={"name": name, "kind": kind}
    )


def unknown_path() -> ApiError:
    return ApiError(404, details={})


def method_not_allowed() -> ApiError:
    return ApiError(405, details={})


def continue_expired() -> ApiError:
    """A list continue token whose version was compacted (apiserver storage/etcd3/store.go ``GetList``,
    its message from apimachinery's ``NewResourceExpired`` call there)."""
    return ApiError(
        410,
        "The provided continue parameter is too old to display a consistent list result. You can start a "
        "new list without the continue parameter, or use the continue token in this response to retrieve "
        "the remainder of the results. Continuing with the provided token results in an inconsistent list "
        "- objects that were created, modified, or deleted between the time the first chunk was returned "
        "and now may show up in the list.",
        reason="Expired",
    )
