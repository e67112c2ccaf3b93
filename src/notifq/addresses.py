"""What a valid recipient is, per channel, and which recipients the mock provider takes."""

from __future__ import annotations

import re

from notifq.vocabulary import Channel

CHANNELS = tuple(Channel)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# No quotes, spaces, commas, CR/LF or angle brackets: an address can never smuggle a second
# recipient or a header into an SMTP envelope.
EMAIL_RE = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
PUSH_TOKEN_RE = re.compile(r"[A-Za-z0-9:_\-.]{1,4096}")


def is_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL_RE.fullmatch(value) is not None


def is_valid(channel: str, value: str) -> bool:
    if channel == Channel.INAPP:
        return False  # in-app messages go to subscribers, never to an address
    if channel == Channel.EMAIL:
        return is_email(value)
    if channel == Channel.SMS:
        return E164_RE.fullmatch(value) is not None
    return PUSH_TOKEN_RE.fullmatch(value) is not None


def describe(channel: str) -> str:
    descriptions: dict[str, str] = {
        Channel.EMAIL: "email addresses",
        Channel.SMS: "E.164 phone numbers (+ and 8 to 15 digits)",
        Channel.PUSH: "device tokens (letters, digits and :_-. only)",
        Channel.INAPP: "subscribers (in-app messages have no address: send to `subscriber`)",
    }
    return descriptions[channel]


# The caller's own user ids: 1 to 128 of `A-Za-z0-9._:@-`, but not `.` or `..`: those are dot-segments,
# which clients and proxies remove from a URL (RFC 3986 §5.2.4), so `/subscribers/..` is `/` and such a
# subscriber could be created (as `%2E%2E`) but never read or erased by an ordinary client.
SUBSCRIBER_ID_RE = re.compile(
    r"(?:[A-Za-z0-9_:@-]|[A-Za-z0-9._:@-][A-Za-z0-9_:@-]|[A-Za-z0-9_:@-]\.|[A-Za-z0-9._:@-]{3,128})"
)
CATEGORY_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def synthetic(channel: str, i: int) -> str:
    """The load-test recipients of `recipientCount`: all of them go to the mock provider."""
    if channel == Channel.SMS:
        return f"+1555{i:07d}"
    if channel == Channel.PUSH:
        return f"mock-device-{i}"
    return f"user{i}@example.com"
