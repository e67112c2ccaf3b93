"""notifq's own exceptions.

Below `api/` only these are raised; the API maps them to HTTP responses in one
table (`api/errors.py`), so the domain never needs to know about HTTP.
"""

from __future__ import annotations

from typing import Any


class NotifqError(Exception):
    """Base class: carries a stable machine-readable code and optional details."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(NotifqError):
    code = "validation_error"


class NotFound(NotifqError):
    code = "not_found"


class Conflict(NotifqError):
    code = "conflict"


class Unauthorized(NotifqError):
    code = "unauthorized"


class Forbidden(NotifqError):
    """The request proves who sent it and the proof fails (a webhook's signature, its topic), or the caller is
    known but not allowed (an API key without the operation's scope)."""

    code = "forbidden"


class TooManyAttempts(NotifqError):
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retryAfterSeconds": retry_after})
        self.retry_after = retry_after


class PayloadTooLarge(NotifqError):
    code = "payload_too_large"


class ServiceUnavailable(NotifqError):
    """PostgreSQL or Redis did not answer: the request changed nothing or is safe to repeat."""

    code = "service_unavailable"


class ConfigError(NotifqError):
    code = "config_error"


# --- delivery outcomes raised by providers -------------------------------------------


class DeliveryError(Exception):
    """A provider could not deliver; subclasses tell the worker what to do next."""


class TransientError(DeliveryError):
    """Worth retrying on the 1 s / 2 s / 4 s schedule."""


class ThrottledError(TransientError):
    """The provider asked us to slow down; retried like a transient error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Retrying cannot help (the address was rejected): fail the message at once."""


class RecipientRejected(PermanentError):
    """The provider refused this recipient for good (a hard bounce, an unregistered device token, an SMS
    opt-out): the message fails, and the address goes on the suppression list (`kind`, a FeedbackKind)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class ProviderConfigError(DeliveryError):
    """Every message would fail alike until the operator fixes the provider's configuration (credentials,
    an unverified sender, a wrong region, host, port or TLS mode, a missing key file), and nothing was
    delivered: the worker holds the provider, gives the attempt back, and tries again after a cool-down."""
