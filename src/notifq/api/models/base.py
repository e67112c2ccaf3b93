"""What every API model shares: camelCase on the wire, strict JSON types, storable text, pages, errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from notifq.api.contract import invalid

T = TypeVar("T")


class ApiModel(BaseModel):
    """Strict: `"5"` is not a number and `5` not a string, as the hand-written parser had it.

    Unknown fields are ignored (clients may send more than a version knows), but they are
    still parsed as JSON, so malformed or unencodable input is refused wherever it is.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        strict=True,
        extra="ignore",
        frozen=True,
    )


def storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL (lone surrogates never get here: the JSON parser refuses them)."""
    if "\x00" in value:
        raise invalid("`{field}` must not contain NUL characters", {"field": ""})
    return value


def one_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise invalid("`{field}` must not contain line breaks", {"field": ""})
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise invalid("`{field}` must not be empty", {"field": ""})
    return value


# The served schema says what `storable` checks, so a fuzzer's "valid" text is text the API takes.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, AfterValidator(storable), Field(json_schema_extra={"pattern": NO_NUL})]
Timestamp = Annotated[datetime, Field(description="ISO 8601 in UTC with a `Z` suffix.")]


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ErrorBody(BaseModel):
    code: str = Field(
        description="Stable machine-readable code.",
        examples=["validation_error", "unauthorized", "forbidden", "not_found", "conflict", "too_many_attempts",
                  "payload_too_large", "service_unavailable", "method_not_allowed", "internal_error"],
    )  # fmt: skip
    message: str = Field(description="Human-readable explanation.")
    details: Any = Field(
        description='Any JSON value giving context, or null: e.g. `{"field": "limit"}`, `{"maxBytes": 1024}`, '
        '`{"field": "recipients", "invalid": [{"index": 3, "value": "x"}]}`, `{"field": "[3].to"}` (in a batch), '
        '`{"header": "Idempotency-Key", "reason": "key_reused"}`, `{"status": "completed"}`.'
    )


class Error(BaseModel):
    """Every error response (4xx and 5xx) has this shape."""

    error: ErrorBody


def _digits(value: Any) -> Any:
    """A query string's number is plain ASCII digits: no sign, no spaces, no `²`, no `1e3`."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise invalid("`{field}` must be a whole number", {"field": ""})
    return value


Limit = Annotated[int, BeforeValidator(_digits)]


def _integral(value: Any) -> Any:
    """JSON Schema's `integer` includes `5.0`; strictness is about `"5"` and `true`, not about spelling."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A JSON integer in a request body: strict (no strings, no booleans), but 5.0 is 5.
JsonInt = Annotated[int, BeforeValidator(_integral)]


def limit_field(default: int, maximum: int) -> Any:
    return Field(default, ge=1, le=maximum, description="Page size.")
