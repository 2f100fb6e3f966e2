"""One error tree for the whole gateway, rendered in OpenAI's error format.

    FrugateError (500 server_error)
    ├── InvalidRequest (400 invalid_request_error)
    │   ├── ContextTooLong (400, code context_length_exceeded)
    │   └── PayloadTooLarge (413)
    ├── AuthenticationFailed (401)
    ├── PermissionDenied (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── RateLimited (429 rate_limit_exceeded, Retry-After)
    ├── BudgetExceeded (429 budget_exceeded, Retry-After)
    ├── Overloaded (503, Retry-After)
    ├── ClientClosed (499: the client left; never sent, only recorded)
    └── UpstreamError (502 upstream_error)
        ├── UpstreamTimeout (504)
        └── UpstreamUnavailable (503)

Upstream failures are mapped once, in `gateway.upstream.client`.
"""

from __future__ import annotations

import orjson


class FrugateError(Exception):
    status_code = 500
    type = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def json(self) -> bytes:
        return orjson.dumps(self.body())

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after)))}


class InvalidRequest(FrugateError):
    status_code = 400
    type = "invalid_request_error"


class ContextTooLong(InvalidRequest):
    default_code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    default_code = "payload_too_large"


class AuthenticationFailed(FrugateError):
    status_code = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(FrugateError):
    status_code = 403
    type = "permission_error"
    default_code = "permission_denied"


class NotFound(FrugateError):
    status_code = 404
    type = "invalid_request_error"
    default_code = "not_found"


class Conflict(FrugateError):
    status_code = 409
    type = "invalid_request_error"
    default_code = "conflict"


class RateLimited(FrugateError):
    status_code = 429
    type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"


class BudgetExceeded(FrugateError):
    status_code = 429
    type = "budget_exceeded"
    default_code = "budget_exceeded"


class Overloaded(FrugateError):
    status_code = 503
    type = "overloaded"
    default_code = "overloaded"


class ClientClosed(FrugateError):
    """The client went away before the response was ready (nginx's 499)."""

    status_code = 499
    type = "client_closed"
    default_code = "client_closed_request"


class UpstreamError(FrugateError):
    status_code = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    type = "timeout"
    default_code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    type = "service_unavailable"
    default_code = "upstream_unavailable"


def error_for_status(status: int, message: str, *, param: str | None = None,
                     code: str | None = None) -> FrugateError:
    """The gateway error matching an upstream client-error status (4xx passed through)."""
    cls: type[FrugateError] = {
        400: InvalidRequest,
        # 401/403: the gateway's own upstream credentials are wrong, not the client's.
        401: UpstreamError,
        403: UpstreamError,
        404: NotFound,
        413: PayloadTooLarge,
        429: Overloaded,
    }.get(status, InvalidRequest if 400 <= status < 500 else UpstreamError)
    return cls(message, param=param, code=code)
