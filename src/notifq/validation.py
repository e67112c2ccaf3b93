"""Turning request JSON into checked values; the first offenders are named in the error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from notifq.errors import ValidationError

MAX_NAME = 200
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_BODY = 256 * 1024
MAX_REPORTED = 10

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")


@dataclass(frozen=True)
class CampaignRequest:
    name: str
    subject: str | None
    body: str | None
    recipients: list[str] | None
    recipient_count: int | None

    @property
    def total(self) -> int:
        return len(self.recipients) if self.recipients is not None else int(self.recipient_count or 0)


def is_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL_RE.fullmatch(value) is not None


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool, single_line: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"`{key}` is required", {"field": key})
        return None
    if not isinstance(value, str):
        raise ValidationError(f"`{key}` must be a string", {"field": key})
    if required and not value.strip():
        raise ValidationError(f"`{key}` must not be empty", {"field": key})
    if len(value) > limit:
        raise ValidationError(f"`{key}` is longer than {limit} characters", {"field": key, "maxLength": limit})
    if single_line and ("\r" in value or "\n" in value):
        raise ValidationError(f"`{key}` must not contain line breaks", {"field": key})
    check_storable(value, key)
    return value


def check_storable(value: str, field: str) -> None:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON escapes can produce)."""
    if "\x00" in value:
        raise ValidationError(f"`{field}` must not contain NUL characters", {"field": field})
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError(f"`{field}` is not valid Unicode text", {"field": field}) from None


def parse_campaign(body: Any, max_size: int) -> CampaignRequest:
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    name = _text(body, "name", MAX_NAME, required=True, single_line=True)
    subject = _text(body, "subject", MAX_SUBJECT, required=False, single_line=True)
    text_body = _text(body, "body", MAX_BODY, required=False, single_line=False)
    has_list, has_count = "recipients" in body, "recipientCount" in body
    if has_list == has_count:
        raise ValidationError(
            "give exactly one of `recipients` (a list of email addresses) or `recipientCount`",
            {"fields": ["recipients", "recipientCount"]},
        )
    if has_count:
        count = body["recipientCount"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValidationError("`recipientCount` must be an integer", {"field": "recipientCount"})
        if count <= 0 or count > max_size:
            raise ValidationError(
                f"`recipientCount` must be between 1 and {max_size}",
                {"field": "recipientCount", "min": 1, "max": max_size},
            )
        return CampaignRequest(name or "", subject, text_body, None, count)
    recipients = body["recipients"]
    if not isinstance(recipients, list) or not recipients:
        raise ValidationError("`recipients` must be a non-empty list of email addresses", {"field": "recipients"})
    if len(recipients) > max_size:
        raise ValidationError(
            f"`recipients` has {len(recipients)} entries; the limit is {max_size}",
            {"field": "recipients", "max": max_size},
        )
    invalid = []
    for index, address in enumerate(recipients):
        if not isinstance(address, str) or not is_email(address):
            invalid.append({"index": index, "value": address if isinstance(address, str) else repr(address)})
            if len(invalid) >= MAX_REPORTED:
                break
    if invalid:
        raise ValidationError(
            f"`recipients` holds invalid email addresses (first: {invalid[0]['value']!r})",
            {"field": "recipients", "invalid": invalid},
        )
    return CampaignRequest(name or "", subject, text_body, recipients, None)


def parse_limit(raw: str | None, default: int = 50, maximum: int = 500) -> int:
    if raw is None or raw == "":
        return default
    if not is_ascii_number(raw) or not 1 <= int(raw) <= maximum:
        raise ValidationError(f"`limit` must be an integer between 1 and {maximum}", {"field": "limit"})
    return int(raw)


def is_ascii_number(raw: str) -> bool:
    """`str.isdigit` also accepts characters like '²' that `int()` refuses."""
    return raw.isascii() and raw.isdigit()


def parse_choice(raw: str | None, choices: tuple[str, ...], field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ValidationError(f"`{field}` must be one of {', '.join(choices)}", {"field": field, "allowed": choices})
    return raw
