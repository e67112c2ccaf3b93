"""Single and batch sends, a message's audit trail, dead letters and statistics."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from notifq.api.contract import invalid
from notifq.api.models.base import NO_NUL, ApiModel, JsonInt, Limit, Page, Text, limit_field, not_blank
from notifq.api.models.campaigns import SendAt, Subject, address_rules, send_at_field
from notifq.api.models.subscribers import CATEGORY_PATTERN, SUBSCRIBER_ID_PATTERN
from notifq.db.messages_repo import EventRow, MessageRow
from notifq.errors import ValidationError
from notifq.validation import MAX_BODY, MAX_DATA_BYTES, MAX_SUBJECT, NotificationRequest, check_address, check_data
from notifq.vocabulary import (
    EVENT_DESCRIPTIONS,
    SKIP_REASON_DESCRIPTIONS,
    Channel,
    Event,
    Lane,
    MessageStatus,
    SkipReason,
)

MAX_BATCH = 1000
REDRIVE_MAX_IDS = 10_000
MESSAGE_ID_PATTERN = r"^0*[1-9][0-9]*$"  # with maxLength 19, as notifications.parse_message_id checks
DATA_SCHEMA = {
    "type": ["object", "null"],
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": {"anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}]},
}


def _create_schema(schema: dict[str, Any]) -> None:
    """Exactly one of `to` and `subscriber`, neither null (which one is meant is which one is present)."""
    schema["allOf"] = address_rules("to")
    schema["examples"] = [
        {"channel": "sms", "to": "+15550000001", "body": "Your code is 1234"},
        {"to": "ada@example.com", "subject": "Welcome", "body": "Hello", "priority": "bulk"},
        {"channel": "push", "to": "mock-device-1", "subject": "Ping", "body": "Hi", "data": {"k": "v"}},
        {"channel": "inapp", "subscriber": "u-42", "subject": "New comment", "body": "Ada replied",
         "category": "comments", "dedupKey": "comment-981"},
    ]  # fmt: skip
    schema["dependentRequired"] = {"dedupKey": ["subscriber"]}
    schema["oneOf"] = [{"required": ["to"], "not": {"required": ["subscriber"]}},
                       {"required": ["subscriber"], "not": {"required": ["to"]}}]  # fmt: skip
    for name in ("to", "subscriber", "category", "dedupKey"):
        prop = schema["properties"][name]
        prop.update(next(b for b in prop.pop("anyOf") if b.get("type") != "null"))
        prop.pop("default", None)


class NotificationCreate(ApiModel):
    """Exactly one of `to` (an address) or `subscriber` (a subscriber id: the address comes from its profile, and
    its preferences apply). Unknown fields are ignored."""

    model_config = ConfigDict(json_schema_extra=_create_schema)

    channel: Channel = Channel.EMAIL
    to: str | None = Field(None, description="The recipient, in the channel's format: email address, E.164 number or "
                           "push token. Not for `inapp` (use `subscriber`).")  # fmt: skip
    subscriber: Annotated[str, Field(pattern=SUBSCRIBER_ID_PATTERN)] | None = Field(
        None, description="A subscriber id (PUT /subscribers/{id}); unknown ids are a 422."
    )
    category: Annotated[str, Field(pattern=CATEGORY_PATTERN)] | None = Field(
        None,
        description="The preference category (e.g. `marketing`): a subscriber who turned it off for this channel "
        "is skipped (`opted_out`), unless the message is transactional.",
    )
    dedup_key: Annotated[Text, Field(min_length=1, max_length=256)] | None = Field(
        None,
        description="With `subscriber`: a second message with the same subscriber and key within "
        "NOTIFQ_DEDUP_WINDOW ends `skipped` (`duplicate`), on every channel.",
    )
    subject: Subject | None = Field(
        None, max_length=MAX_SUBJECT, json_schema_extra={"pattern": r"^[^\r\n\x00]*$"},
        description=f"Optional; one line (no CR/LF), at most {MAX_SUBJECT} characters. Push: the title.",
    )  # fmt: skip
    body: Text = Field(
        min_length=1, max_length=MAX_BODY, json_schema_extra={"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"},
        description=f"Required, not blank, at most {MAX_BODY} characters. Sent as is (no templates).",
    )  # fmt: skip
    data: Annotated[Any, WithJsonSchema(DATA_SCHEMA)] = Field(
        None,
        description="Optional key/value payload (push data). String values (numbers are turned into strings), at "
        f"most {MAX_DATA_BYTES} bytes as JSON.",
    )
    priority: Lane = Field(
        Lane.TRANSACTIONAL,
        description="The queue lane. Workers serve the `transactional` lane ahead of `bulk` (its own queue), so a "
        "one-off send never waits behind a campaign. Campaign messages are always `bulk`.",
    )
    send_at: SendAt = send_at_field("the notification (status `pending`); it can be cancelled until it is sent")

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return not_blank(value)

    @model_validator(mode="after")
    def _whole(self) -> NotificationCreate:
        given = self.model_fields_set
        if ("to" in given) == ("subscriber" in given):
            raise invalid("give exactly one of `to` (an address) or `subscriber` (a subscriber id)",
                          {"field": "to", "fields": ["to", "subscriber"]})  # fmt: skip
        for name in ("to", "subscriber", "category", "dedup_key"):
            if name in given and getattr(self, name) is None:
                raise invalid(f"`{to_camel(name)}` must not be null", {"field": to_camel(name)})
        if self.dedup_key is not None and self.subscriber is None:
            raise invalid("`dedupKey` needs `subscriber` (duplicates are per subscriber)", {"field": "dedupKey"})
        try:
            if self.to is not None:
                check_address(self.channel, self.to)
            object.__setattr__(self, "data", check_data(self.data))
        except ValidationError as exc:
            raise invalid(exc.message, exc.details) from None
        return self

    def request(self) -> NotificationRequest:
        return NotificationRequest(self.channel, self.to, self.subject, self.body, self.data, self.priority,
                                   self.send_at, self.subscriber, self.category, self.dedup_key)  # fmt: skip


NotificationBatch = Annotated[
    list[NotificationCreate],
    Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"The batch API: 1 to {MAX_BATCH} notifications, all "
        'created or none. A 422 names the offending item as a prefix of the field (`{"field": "[3].to"}`).',
    ),
]


class NotificationEvent(ApiModel):
    model_config = ConfigDict(strict=False)
    at: datetime = Field(description="When it happened.")
    event: Event = Field(description="; ".join(f"`{e}`: {d}" for e, d in EVENT_DESCRIPTIONS.items()) + ".")
    attempt: int | None = Field(description="The attempt number the event belongs to (null for `accepted`).")
    detail: str | None = Field(description="The error text for retry, failed, throttled, deferred and lost.")
    provider: str | None = Field(description="The provider involved (e.g. `mock`, `ses`, `smtp`, `sns`, `fcm`).")


class Notification(ApiModel):
    """A single notification, or any campaign message seen through /notifications/{id}."""

    model_config = ConfigDict(strict=False)
    id: str = Field(pattern=r"^[0-9]+$", description="A 64-bit integer id, sent as a string.")
    campaign_id: uuid.UUID | None = Field(description="The campaign it belongs to; null for a single notification.")
    channel: Channel
    to: str
    subject: str | None = Field(description="The subject; null for campaign messages (their campaign holds it).")
    priority: Lane
    status: MessageStatus
    attempts: int = Field(ge=0, description="Delivery attempts so far (reset to 0 by a retry or redrive).")
    provider: str | None = Field(description="The provider of the last attempt.")
    provider_message_id: str | None = Field(description="The provider's id for the sent message.")
    last_error: str | None = Field(description="The last delivery error, if any.")
    send_at: datetime | None = Field(description="When it is held until; null if due at once.")
    created_at: datetime = Field(description="When it was accepted.")
    updated_at: datetime = Field(description="Last status change.")
    subscriber: str | None = Field(description="The subscriber it is for, if it was sent to one.")
    category: str | None = Field(description="Its preference category, if any.")
    skip_reason: SkipReason | None = Field(
        description="Status `skipped` only: " + "; ".join(f"`{r}`: {d}" for r, d in SKIP_REASON_DESCRIPTIONS.items())
        + ".")  # fmt: skip
    delivered_at: datetime | None = Field(
        description="In-app: when a client of the subscriber ACKed it; email: "
        "when SES reported delivery to the receiving server."
    )
    read_at: datetime | None = Field(description="In-app: when the subscriber read it.")
    bounced_at: datetime | None = Field(description="When it hard-bounced (the address is now suppressed).")
    complained_at: datetime | None = Field(description="When its recipient marked it as spam.")

    @classmethod
    def of(cls, m: MessageRow) -> Notification:
        return cls(
            id=str(m.id), campaign_id=m.campaign_id, channel=m.channel, to=m.recipient, subject=m.subject,
            priority=m.priority, status=m.status, attempts=m.attempts, provider=m.provider,
            provider_message_id=m.provider_message_id, last_error=m.last_error, send_at=m.send_at,
            created_at=m.created_at, updated_at=m.updated_at, subscriber=m.subscriber_id, category=m.category,
            skip_reason=m.skip_reason, delivered_at=m.delivered_at, read_at=m.read_at, bounced_at=m.bounced_at,
            complained_at=m.complained_at,
        )  # fmt: skip


class NotificationWithEvents(Notification):
    events: list[NotificationEvent] = Field(description="The audit trail, oldest first, from `accepted`.")

    @classmethod
    def with_events(cls, m: MessageRow, events: list[EventRow]) -> NotificationWithEvents:
        # Acceptance is the row's creation; every later transition and attempt is an event row.
        trail = [NotificationEvent(at=m.created_at, event=Event.ACCEPTED, attempt=None, detail=None, provider=None)]
        trail += [NotificationEvent(at=e.at, event=e.event, attempt=e.attempt, detail=e.detail, provider=e.provider)
                  for e in events]  # fmt: skip
        return cls(**Notification.of(m).__dict__, events=trail)


class NotificationBatchResult(ApiModel):
    ids: list[Annotated[str, Field(pattern=r"^[0-9]+$")]] = Field(description="The new ids, in request order.")
    items: list[Notification] = Field(description="The notifications, in request order.")


class NotificationPage(Page[Notification]):
    """Newest first."""


MessageId = str | JsonInt
IDS_SCHEMA = {
    "type": "array", "minItems": 1, "maxItems": REDRIVE_MAX_IDS,
    "items": {"anyOf": [{"type": "string", "pattern": MESSAGE_ID_PATTERN, "maxLength": 19},
                        {"type": "integer", "minimum": 1}]},
}  # fmt: skip


class RedriveFilter(ApiModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel | None = None
    campaign_id: uuid.UUID | None = None


def _redrive_schema(schema: dict[str, Any]) -> None:
    """Exactly one of the two, and neither may be null (the API says which is meant by which is present)."""
    schema["oneOf"] = [{"required": ["ids"], "not": {"required": ["filter"]}},
                       {"required": ["filter"], "not": {"required": ["ids"]}}]  # fmt: skip
    schema["examples"] = [{"ids": ["1042", "1043"]}, {"filter": {"channel": "sms"}}]
    prop = schema["properties"]["filter"]
    prop.update(next(b for b in prop.pop("anyOf") if b.get("type") != "null"))
    prop.pop("default", None)


class RedriveRequest(ApiModel):
    """Exactly one of `ids` or `filter`; both or neither is a 422."""

    model_config = ConfigDict(json_schema_extra=_redrive_schema)
    ids: Annotated[list[MessageId] | None, WithJsonSchema(IDS_SCHEMA)] = Field(
        None, description="Message ids; those not `failed` are skipped.")  # fmt: skip
    filter: RedriveFilter | None = Field(
        None, description="Every dead letter matching; `{}` means all of them.")  # fmt: skip

    @model_validator(mode="after")
    def _one(self) -> RedriveRequest:
        given = self.model_fields_set
        if ("ids" in given) == ("filter" in given):
            raise invalid("give exactly one of `ids` (a list of message ids) or `filter`",
                          {"fields": ["ids", "filter"]})  # fmt: skip
        if "filter" in given and self.filter is None:
            raise invalid("`filter` must be an object", {"field": "filter"})
        if "ids" in given and (self.ids is None or not 1 <= len(self.ids) <= REDRIVE_MAX_IDS):
            raise invalid(f"`ids` must be a list of 1 to {REDRIVE_MAX_IDS:,} message ids", {"field": "ids"})
        for i, raw in enumerate(self.ids or []):
            text = str(raw)
            malformed = not (text.isascii() and text.isdigit()) or (isinstance(raw, str) and len(text) > 19)
            if isinstance(raw, bool) or malformed or int(text) < 1:
                raise invalid("malformed notification id: expected a positive integer", {"field": f"ids[{i}]"})
        return self

    def message_ids(self) -> list[int] | None:
        return [int(str(i)) for i in self.ids] if self.ids is not None else None


class RedriveResult(ApiModel):
    redriven: int = Field(ge=0, description="How many dead letters went back to `queued` with fresh attempts.")


class QueueDepth(ApiModel):
    transactional: int = Field(ge=0)
    bulk: int = Field(ge=0)


class Stats(ApiModel):
    model_config = ConfigDict(strict=False)
    by_status: dict[MessageStatus, Annotated[int, Field(ge=0)]] = Field(
        description="Messages (single and campaign) per status; statuses with none are left out.")  # fmt: skip
    by_channel: dict[Channel, dict[MessageStatus, Annotated[int, Field(ge=0)]]] = Field(
        description="Per channel, messages per status (zeros left out).")  # fmt: skip
    sent_last_minute: int = Field(ge=0, description="Messages sent in the last 60 s.")
    send_rate_per_second: float = Field(ge=0, description="sentLastMinute / 60.")
    queue_depth: QueueDepth = Field(description="Delivery batches (jobs, not messages) in each lane's Redis queue.")


# RFC 3339 with a zone, and only values Python's datetime holds (years 0001-9999, seconds 00-59,
# at most microseconds): what the pattern admits and the calendar allows (format date-time) is
# accepted, so a fuzzer's valid value is one the API takes. Lower-case `t`/`z` are refused, as
# the pattern says, although the parser would take them.
INSTANT_PATTERN = (
    r"^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_INSTANT = re.compile(INSTANT_PATTERN)


def _instant_text(value: Any) -> Any:
    if isinstance(value, str) and not _INSTANT.fullmatch(value):
        raise invalid("`{field}` must be an ISO 8601 date-time with a zone, e.g. 2026-12-01T09:00:00Z (send `+` "
                      "as %2B)", {"field": ""})  # fmt: skip
    return value


def _utc(value: datetime) -> datetime:
    """In UTC; an instant beyond datetime's range once converted (0001-01-01T00:00:00+05:00) is its limit."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


Instant = Annotated[
    datetime,
    BeforeValidator(_instant_text),
    AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN}),
]


class NotificationQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(50, 500)
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = Field(None, description="`nextCursor`.")
    status: MessageStatus | None = Field(None, description="Only notifications in this status.")
    channel: Channel | None = Field(None, description="Only notifications on this channel.")
    to: Annotated[Text, Field(max_length=4096)] | None = Field(None, description="Only notifications to this address.")
    since: Instant | None = Field(None, description="Only notifications created at or after this instant (ISO 8601 "
                                  "with a zone: `Z` or `+02:00`, the `+` sent as `%2B`).")  # fmt: skip
    until: Instant | None = Field(None, description="Only notifications created before this instant (same format). "
                                  "A window that ends before it starts is empty.")  # fmt: skip


class DeadLetterQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(50, 500)
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = Field(None, description="`nextCursor`.")
    channel: Channel | None = Field(None, description="Only dead letters on this channel.")
    campaign_id: uuid.UUID | None = Field(None, description="Only dead letters of this campaign.")
