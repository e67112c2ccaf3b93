"""What a valid recipient is, per channel, and which recipients the mock provider takes."""

from __future__ import annotations

import hashlib
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
MAX_CATEGORIES = 200  # categories in one subscriber's preferences


def synthetic(channel: str, i: int) -> str:
    """The load-test recipients of `recipientCount`: all of them go to the mock provider."""
    if channel == Channel.SMS:
        return f"+1555{i:07d}"
    if channel == Channel.PUSH:
        return f"mock-device-{i}"
    return f"user{i}@example.com"


SUPPRESSIBLE_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)
_PHONE_PUNCTUATION = re.compile(r"[ ().\-/]")
# What `suppression_key` takes as a phone number, as a pattern (served in /openapi.json): E.164 written with
# spaces, dots, dashes, slashes or brackets anywhere, and `00` for `+`.
_P = r"[ ().\-/]*"
MAX_LOOSE_PHONE = 64
LOOSE_PHONE_PATTERN = rf"^{_P}(?:\+|0{_P}0){_P}[1-9](?:{_P}[0-9]){{7,14}}{_P}$"


def suppression_key(channel: str, value: str) -> str | None:
    """The form an address takes on the suppression list, or None if it is not an address of `channel`.

    Email: the domain is case-insensitive (RFC 5321 §2.4) and lowered; the local part is kept as
    it is (it may be case-sensitive). Phones: E.164, after dropping the spaces, dots, dashes and
    brackets people write, and reading a leading `00` as `+`. Push tokens: exactly as given.
    `SUPPRESSION_KEY_SQL` computes the same for addresses already valid (what a message holds).
    """
    if channel == Channel.EMAIL:
        if not is_email(value):
            return None
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    if channel == Channel.SMS:
        if len(value) > MAX_LOOSE_PHONE:
            return None
        phone = _PHONE_PUNCTUATION.sub("", value)
        if phone.startswith("00"):
            phone = "+" + phone[2:]
        return phone if E164_RE.fullmatch(phone) else None
    if channel == Channel.PUSH:
        if not PUSH_TOKEN_RE.fullmatch(value):
            return None
        return value if len(value) <= MAX_KEY_LENGTH else "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return None


# A btree entry holds at most ~2.7 KB; push tokens may be 4,096 characters (real ones are ~160), so a
# longer one is stored as its hash. Emails (254) and phones (16) never get near it.
MAX_KEY_LENGTH = 1024


def suppression_key_sql(channel: str, address: str) -> str:
    """SQL for `suppression_key` of a message's (already valid) address: the email domain lowered, a very
    long push token hashed."""
    return (
        f"CASE WHEN {channel} = '{Channel.EMAIL}' THEN "
        f"split_part({address}, '@', 1) || '@' || lower(split_part({address}, '@', 2)) "
        f"WHEN length({address}) > {MAX_KEY_LENGTH} THEN "
        f"'sha256:' || encode(sha256(convert_to({address}, 'UTF8')), 'hex') ELSE {address} END"
    )
