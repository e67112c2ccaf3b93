"""What the services are asked to do (checked values), and the rules no JSON schema can state.

The API's pydantic models (`api/models/`) check types and lengths, then call these for
what spans fields: addresses in the channel's format, every template variable present for
every recipient (reporting up to ten offenders at once), schedules. Nothing here touches a
database, so a request is fully checked before a service writes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notifq.addresses import describe, is_valid
from notifq.errors import ValidationError
from notifq.templates import missing, placeholders

MAX_NAME = 200
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_BODY = 256 * 1024
MAX_DATA_BYTES = 4096  # FCM's data payload limit
MAX_REPORTED = 10
MAX_SCHEDULE_AHEAD = timedelta(days=366)


@dataclass(frozen=True)
class CampaignRequest:
    name: str
    subject: str | None
    body: str | None
    recipients: list[tuple[str, str | None]] | None  # (address, vars as JSON text)
    recipient_count: int | None
    channel: str = "email"
    send_at: datetime | None = None
    subscribers: list[str] | None = None  # the audience is subscribers (their profiles give the addresses)
    category: str | None = None

    @property
    def total(self) -> int:
        if self.subscribers is not None:
            return len(self.subscribers)
        return len(self.recipients) if self.recipients is not None else int(self.recipient_count or 0)


@dataclass(frozen=True)
class NotificationRequest:
    channel: str
    to: str | None  # None: the subscriber's address for the channel
    subject: str | None
    body: str
    data: dict[str, str] | None
    priority: str
    send_at: datetime | None
    subscriber: str | None = None
    category: str | None = None
    dedup_key: str | None = None


def check_storable(value: str, field: str) -> None:
    """PostgreSQL text holds neither NUL nor lone surrogates (which JSON escapes can produce)."""
    if "\x00" in value:
        raise ValidationError(f"`{field}` must not contain NUL characters", {"field": field})
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError(f"`{field}` is not valid Unicode text", {"field": field}) from None


def check_send_at(at: datetime | None, field: str = "sendAt", now: datetime | None = None) -> datetime | None:
    """A time with a zone; a time in the past means now (None)."""
    if at is None:
        return None
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


def check_synthetic(count: int | None, max_size: int, subject: str | None, body: str | None) -> None:
    if count is None or count <= 0 or count > max_size:
        raise ValidationError(
            f"`recipientCount` must be between 1 and {max_size}",
            {"field": "recipientCount", "min": 1, "max": max_size},
        )
    if lacking := missing(placeholders(subject, body), None):
        raise ValidationError(
            f"the templates use {{{{ {lacking[0]} }}}}, which synthetic recipients do not have",
            {"field": "recipientCount", "variables": lacking},
        )


def check_recipients(
    recipients: Any, channel: str, max_size: int, subject: str | None, body: str | None
) -> list[tuple[str, str | None]]:
    return _recipients(recipients, channel, max_size, placeholders(subject, body), placeholders(subject))


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


def check_data(data: Any) -> dict[str, str] | None:
    """A push data payload: names to strings (numbers turned into strings), at most 4 KiB as JSON."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValidationError("`data` must be an object", {"field": "data"})
    checked = _variables(data, "data") if data else None
    if checked and len(json.dumps(checked).encode()) > MAX_DATA_BYTES:
        raise ValidationError(f"`data` exceeds {MAX_DATA_BYTES} bytes", {"field": "data"})
    return checked


def check_address(channel: str, to: str) -> None:
    if not is_valid(channel, to):
        raise ValidationError(f"`to` must be one of {describe(channel)}", {"field": "to", "value": to[:256]})


def is_ascii_number(raw: str) -> bool:
    """`str.isdigit` also accepts characters like '²' that `int()` refuses."""
    return raw.isascii() and raw.isdigit()


IDEMPOTENCY_KEY_MAX_LENGTH = 255


def is_idempotency_key(raw: str) -> bool:
    """1 to 255 printable ASCII characters. Shared by the API and the CLI, which checks before sending."""
    return 1 <= len(raw) <= IDEMPOTENCY_KEY_MAX_LENGTH and raw.isascii() and raw.isprintable()
