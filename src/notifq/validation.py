"""Turning request JSON into checked values; errors name the field and the first offenders.

Nothing here touches a database: a request is fully checked (addresses, templates and
their variables, schedules) before the service writes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notifq.addresses import CHANNELS, describe, is_valid
from notifq.errors import ValidationError
from notifq.templates import missing, placeholders

MAX_NAME = 200
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_BODY = 256 * 1024
MAX_DATA_BYTES = 4096  # FCM's data payload limit
MAX_REPORTED = 10
MAX_SCHEDULE_AHEAD = timedelta(days=366)
PRIORITIES = ("transactional", "bulk")


@dataclass(frozen=True)
class CampaignRequest:
    name: str
    subject: str | None
    body: str | None
    recipients: list[tuple[str, str | None]] | None  # (address, vars as JSON text)
    recipient_count: int | None
    channel: str = "email"
    send_at: datetime | None = None

    @property
    def total(self) -> int:
        return len(self.recipients) if self.recipients is not None else int(self.recipient_count or 0)


@dataclass(frozen=True)
class NotificationRequest:
    channel: str
    to: str
    subject: str | None
    body: str
    data: dict[str, str] | None
    priority: str
    send_at: datetime | None


def check_storable(value: str, field: str) -> None:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON escapes can produce)."""
    if "\x00" in value:
        raise ValidationError(f"`{field}` must not contain NUL characters", {"field": field})
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError(f"`{field}` is not valid Unicode text", {"field": field}) from None


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool, single_line: bool, field: str = ""
          ) -> str | None:  # fmt: skip
    field = field or key
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"`{field}` is required", {"field": field})
        return None
    if not isinstance(value, str):
        raise ValidationError(f"`{field}` must be a string", {"field": field})
    if required and not value.strip():
        raise ValidationError(f"`{field}` must not be empty", {"field": field})
    if len(value) > limit:
        raise ValidationError(f"`{field}` is longer than {limit} characters", {"field": field, "maxLength": limit})
    if single_line and ("\r" in value or "\n" in value):
        raise ValidationError(f"`{field}` must not contain line breaks", {"field": field})
    check_storable(value, field)
    return value


def _channel(body: dict[str, Any], field: str = "channel") -> str:
    value = body.get("channel", "email")
    if value not in CHANNELS:
        raise ValidationError(f"`{field}` must be one of {', '.join(CHANNELS)}", {"field": field, "allowed": CHANNELS})
    return str(value)


def parse_send_at(value: Any, field: str = "sendAt", now: datetime | None = None) -> datetime | None:
    """An ISO 8601 time with a zone; a time in the past means now."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"`{field}` must be an ISO 8601 date-time string", {"field": field})
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"`{field}` is not an ISO 8601 date-time", {"field": field}) from None
    if at.tzinfo is None:
        raise ValidationError(f"`{field}` needs a time zone (e.g. Z or +02:00)", {"field": field})
    now = now or datetime.now(UTC)
    if at - now > MAX_SCHEDULE_AHEAD:
        raise ValidationError(f"`{field}` is more than a year ahead", {"field": field})
    return at.astimezone(UTC) if at > now else None


def _variables(value: Any, field: str) -> dict[str, str]:
    """An object of names to strings (numbers are accepted and turned into strings)."""
    if not isinstance(value, dict):
        raise ValidationError(f"`{field}` must be an object of names to strings", {"field": field})
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ValidationError(f"`{field}.{k}` must be a string or a number", {"field": f"{field}.{k}"})
        out[str(k)] = str(v)
        check_storable(str(k), f"{field}.{k}")
        check_storable(out[str(k)], f"{field}.{k}")
    return out


def parse_campaign(body: Any, max_size: int) -> CampaignRequest:
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    name = _text(body, "name", MAX_NAME, required=True, single_line=True)
    subject = _text(body, "subject", MAX_SUBJECT, required=False, single_line=True)
    text_body = _text(body, "body", MAX_BODY, required=False, single_line=False)
    channel = _channel(body)
    send_at = parse_send_at(body.get("sendAt"))
    needed = placeholders(subject, text_body)
    has_list, has_count = "recipients" in body, "recipientCount" in body
    if has_list == has_count:
        raise ValidationError(
            "give exactly one of `recipients` (a list of addresses) or `recipientCount`",
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
        if lacking := missing(needed, None):
            raise ValidationError(
                f"the templates use {{{{ {lacking[0]} }}}}, which synthetic recipients do not have",
                {"field": "recipientCount", "variables": lacking},
            )
        return CampaignRequest(name or "", subject, text_body, None, count, channel, send_at)
    recipients = _recipients(body["recipients"], channel, max_size, needed, placeholders(subject))
    return CampaignRequest(name or "", subject, text_body, recipients, None, channel, send_at)


def _recipients(
    recipients: Any, channel: str, max_size: int, needed: frozenset[str], in_subject: frozenset[str]
) -> list[tuple[str, str | None]]:
    if not isinstance(recipients, list) or not recipients:
        raise ValidationError(f"`recipients` must be a non-empty list of {describe(channel)}", {"field": "recipients"})
    if len(recipients) > max_size:
        raise ValidationError(
            f"`recipients` has {len(recipients)} entries; the limit is {max_size}",
            {"field": "recipients", "max": max_size},
        )
    parsed: list[tuple[str, str | None]] = []
    invalid: list[dict[str, Any]] = []
    lacking: list[dict[str, Any]] = []
    for index, entry in enumerate(recipients):
        variables: dict[str, str] | None = None
        address = entry
        if isinstance(entry, dict):
            address = entry.get("to")
            if "vars" in entry:
                variables = _variables(entry["vars"], f"recipients[{index}].vars")
                for name in in_subject & variables.keys():  # a header must stay one line
                    if "\r" in variables[name] or "\n" in variables[name]:
                        raise ValidationError(
                            f"`recipients[{index}].vars.{name}` is used in the subject and must not contain "
                            "line breaks", {"field": f"recipients[{index}].vars.{name}"},
                        )  # fmt: skip
        if not isinstance(address, str) or not is_valid(channel, address):
            if len(invalid) < MAX_REPORTED:
                invalid.append({"index": index, "value": address if isinstance(address, str) else repr(address)})
            continue
        if needed and (names := missing(needed, variables)) and len(lacking) < MAX_REPORTED:
            lacking.append({"index": index, "to": address, "variables": names})
        parsed.append((address, json.dumps(variables) if variables else None))
    if invalid:
        raise ValidationError(
            f"`recipients` holds invalid {describe(channel)} (first: {invalid[0]['value']!r})",
            {"field": "recipients", "invalid": invalid},
        )
    if lacking:
        first = lacking[0]
        raise ValidationError(
            f"recipient #{first['index']} ({first['to']}) has no value for {{{{ {first['variables'][0]} }}}}",
            {"field": "recipients", "missingVariables": lacking},
        )
    return parsed


def parse_notification(body: Any, field: str = "") -> NotificationRequest:
    """One notification; `field` prefixes error fields inside a batch (e.g. `[3].to`)."""
    if not isinstance(body, dict):
        raise ValidationError(f"{field or 'the request body'} must be a JSON object", {"field": field or None})
    channel = _channel(body, f"{field}channel")
    to = body.get("to")
    if not isinstance(to, str) or not is_valid(channel, to):
        raise ValidationError(
            f"`{field}to` must be one of {describe(channel)}",
            {"field": f"{field}to", "value": to if isinstance(to, str) else repr(to)},
        )
    subject = _text(body, "subject", MAX_SUBJECT, required=False, single_line=True, field=f"{field}subject")
    text_body = _text(body, "body", MAX_BODY, required=True, single_line=False, field=f"{field}body")
    data = body.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise ValidationError(f"`{field}data` must be an object", {"field": f"{field}data"})
        data = _variables(data, f"{field}data") if data else None
        if data and len(json.dumps(data).encode()) > MAX_DATA_BYTES:
            raise ValidationError(f"`{field}data` exceeds {MAX_DATA_BYTES} bytes", {"field": f"{field}data"})
    priority = body.get("priority", "transactional")
    if priority not in PRIORITIES:
        raise ValidationError(
            f"`{field}priority` must be transactional or bulk", {"field": f"{field}priority", "allowed": PRIORITIES}
        )
    send_at = parse_send_at(body.get("sendAt"), f"{field}sendAt")
    return NotificationRequest(channel, to, subject, text_body or "", data, str(priority), send_at)


def parse_notifications(body: Any, max_batch: int) -> tuple[list[NotificationRequest], bool]:
    """A single object, or a JSON array of up to `max_batch` (the batch API); returns (items, is_batch)."""
    if isinstance(body, list):
        if not body or len(body) > max_batch:
            raise ValidationError(f"a batch holds 1 to {max_batch} notifications", {"max": max_batch})
        return [parse_notification(item, f"[{i}].") for i, item in enumerate(body)], True
    return [parse_notification(body)], False


def is_ascii_number(raw: str) -> bool:
    """`str.isdigit` also accepts characters like '²' that `int()` refuses."""
    return raw.isascii() and raw.isdigit()


def parse_limit(raw: str | None, default: int = 50, maximum: int = 500) -> int:
    if raw is None or raw == "":
        return default
    if not is_ascii_number(raw) or not 1 <= int(raw) <= maximum:
        raise ValidationError(f"`limit` must be an integer between 1 and {maximum}", {"field": "limit"})
    return int(raw)


def parse_choice(raw: str | None, choices: tuple[str, ...], field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ValidationError(f"`{field}` must be one of {', '.join(choices)}", {"field": field, "allowed": choices})
    return raw


IDEMPOTENCY_KEY_MAX_LENGTH = 255


def is_idempotency_key(raw: str) -> bool:
    """1 to 255 printable ASCII characters. Shared by the API and the CLI, which checks before sending."""
    return 1 <= len(raw) <= IDEMPOTENCY_KEY_MAX_LENGTH and raw.isascii() and raw.isprintable()
