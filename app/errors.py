"""Every error the service answers with, and the one table from error type to HTTP status.

Raise one of these anywhere in app/ (every room may); app/http/errors.py answers it in OpenAI's envelope
{"error": {"message", "type", "param", "code"}} with the status its type carries here.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: a message for the client, the form field at fault (if any) and a stable code."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(ServiceError):
    """A form field is missing, malformed or out of range."""

    status, type, code = 400, "invalid_request_error", "invalid_value"


class AudioDecodeError(ServiceError):
    """The upload is not audio we can decode (corrupt, truncated, unknown container or codec)."""

    status, type, code = 400, "invalid_request_error", "invalid_audio"


class UnsupportedMediaType(ServiceError):
    """The upload is recognisably not audio (text, image, archive...)."""

    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class PayloadTooLarge(ServiceError):
    """The upload exceeds the byte limit, or its audio exceeds the duration limit."""

    status, type, code = 413, "invalid_request_error", "payload_too_large"


class Unauthorized(ServiceError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class NotFound(ServiceError):
    status, type, code = 404, "invalid_request_error", "not_found"


class Conflict(ServiceError):
    """The request conflicts with the resource's state (a job not completed yet, an Idempotency-Key reused
    with another request, cancelling a finished job)."""

    status, type, code = 409, "invalid_request_error", "conflict"


class Overloaded(ServiceError):
    """Admission control refused the request; carries Retry-After."""

    status, type, code = 429, "rate_limit_error", "overloaded"


class NotReady(ServiceError):
    """Models are loading, or the service is draining for shutdown."""

    status, type, code = 503, "server_error", "not_ready"


class DeadlineExceeded(ServiceError):
    status, type, code = 504, "server_error", "deadline_exceeded"


class ClientClosed(ServiceError):
    """The client hung up before its answer was ready (nginx's 499; nobody reads the body)."""

    status, type, code = 499, "invalid_request_error", "client_closed"


class InferenceFailed(ServiceError):
    """The model raised while processing the batch this request was in."""

    status, type, code = 500, "server_error", "inference_failed"


def status_of(error: ServiceError) -> int:
    """The HTTP status of an error: the one place that decides it is the class attribute above."""
    return error.status
