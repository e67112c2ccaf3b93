"""Campaign bodies: what POST /campaigns accepts and what the campaign endpoints answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from notifq.addresses import E164_RE, EMAIL_RE, PUSH_TOKEN_RE
from notifq.api.contract import invalid
from notifq.api.models.base import NO_NUL, ApiModel, JsonInt, Limit, Page, Text, limit_field, not_blank, one_line
from notifq.api.models.subscribers import CATEGORY_PATTERN, SUBSCRIBER_ID_PATTERN
from notifq.campaigns import CURSOR_PATTERN
from notifq.db.campaigns_repo import CampaignRow
from notifq.db.messages_repo import MessageRow
from notifq.errors import ValidationError
from notifq.templates import BUILTINS
from notifq.validation import (
    MAX_BODY,
    MAX_NAME,
    MAX_REPORTED,
    MAX_SUBJECT,
    CampaignRequest,
    check_recipients,
    check_send_at,
    check_synthetic,
)
from notifq.vocabulary import CampaignStatus, Channel, MessageStatus, SkipReason

ADDRESS_SCHEMAS: dict[Channel, dict[str, Any]] = {
    Channel.EMAIL: {"type": "string", "maxLength": 254, "pattern": f"^{EMAIL_RE.pattern}$"},
    Channel.SMS: {"type": "string", "pattern": f"^{E164_RE.pattern}$"},
    Channel.PUSH: {"type": "string", "pattern": f"^{PUSH_TOKEN_RE.pattern}$"},
}
NAME_PATTERN = r"^[^\r\n\x00]*[^\s\x00][^\r\n\x00]*$"
ONE_LINE_PATTERN = r"^[^\r\n\x00]*$"
BUILTIN_NOTE = ", ".join(f"`{{{{ {name} }}}}`" for name in sorted(BUILTINS))


def address_rules(where: str) -> Any:
    """`if`/`then` pairs tying the recipient format to `channel` (absent means email).

    `where` is `recipients` (a list of addresses or `{to, vars}`) or `to` (one address).
    """

    def constrain(channel: Channel) -> dict[str, Any]:
        if channel not in ADDRESS_SCHEMAS:  # in-app: subscribers only, never an address
            return {"properties": {"recipients": False, "recipientCount": False} if where == "recipients"
                    else {where: False}}  # fmt: skip
        address = ADDRESS_SCHEMAS[channel]
        if where == "to":
            return {"properties": {"to": dict(address)}}
        entry = {"anyOf": [dict(address), {"type": "object", "properties": {"to": dict(address)}}]}
        return {"properties": {"recipients": {"items": entry}}}

    others = [c for c in Channel if c != Channel.EMAIL]
    rules = [{"if": {"required": ["channel"], "properties": {"channel": {"const": c.value}}}, "then": constrain(c)}
             for c in others]  # fmt: skip
    not_other = {"not": {"required": ["channel"], "properties": {"channel": {"enum": [c.value for c in others]}}}}
    rules.append({"if": not_other, "then": constrain(Channel.EMAIL)})
    return rules


def send_at_field(what: str) -> Any:
    return Field(
        None,
        description=f"Optional: hold {what} until this time. ISO 8601 with a zone (`Z` or `+02:00`; without one it "
        "is a 422); a time in the past means now; at most a year ahead.",
        examples=["2026-01-15T09:30:00Z"],
    )


def due(value: datetime | None) -> datetime | None:
    """A zone is required; a past time means now (None); over a year ahead is refused."""
    try:
        return check_send_at(value)
    except ValidationError as exc:
        raise invalid(exc.message.replace("`sendAt`", "`{field}`"), {"field": ""}) from None


SendAt = Annotated[datetime | None, AfterValidator(due)]
Name = Annotated[Text, AfterValidator(not_blank), AfterValidator(one_line)]
Subject = Annotated[Text, AfterValidator(one_line)]


VARS_SCHEMA = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": {"anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}]},
}


class RecipientWithVars(ApiModel):
    to: str = Field(description="The address, in the format of the campaign's channel.")
    vars: Annotated[dict[Text, Text | float] | None, WithJsonSchema(VARS_SCHEMA)] = Field(
        None,
        description="Values for the templates' `{{ name }}` placeholders. Strings; numbers are accepted and turned "
        "into strings; anything else is a 422.",
        examples=[{"name": "Ada", "code": "1234"}],
    )


RECIPIENTS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [{"type": "string"}, {"$ref": "#/components/schemas/RecipientWithVars"}]},
}


class CampaignCreate(ApiModel):
    """Exactly one of `recipients` (explicit addresses), `subscribers` (subscriber ids: each message takes its
    address from the profile, and the subscriber's preferences apply) or `recipientCount` (load-test mode: synthetic
    recipients that all go to the mock provider). Sending none or more than one is a 422. In-app campaigns take
    `subscribers` only. Unknown fields are ignored. Everything is checked before anything is written."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["recipients"]}, {"required": ["recipientCount"]}, {"required": ["subscribers"]}],
            "allOf": address_rules("recipients"),
            "examples": [
                {"name": "Spring launch", "subject": "We're live", "recipients": ["ada@example.com"]},
                {"name": "Codes", "channel": "sms", "body": "Hi {{ name }}, your code is {{ code }}",
                 "recipients": [{"to": "+15550000001", "vars": {"name": "Ada", "code": "1234"}}]},
                {"name": "Load test", "recipientCount": 100000},
                {"name": "Release notes", "channel": "inapp", "subject": "What's new", "body": "Hi {{ firstName }}",
                 "subscribers": ["u-1", "u-2"], "category": "product"},
            ],
        }
    )  # fmt: skip

    name: Name = Field(
        min_length=1, max_length=MAX_NAME, json_schema_extra={"pattern": NAME_PATTERN},
        description=f"Required, not blank, at most {MAX_NAME} characters, no line breaks.",
    )  # fmt: skip
    channel: Channel = Field(
        Channel.EMAIL, description="How every message of the campaign is delivered; decides what a valid recipient is."
    )
    subject: Subject | None = Field(
        None, max_length=MAX_SUBJECT, json_schema_extra={"pattern": ONE_LINE_PATTERN},
        description=f"Optional template; at most {MAX_SUBJECT} characters (RFC 5322's line limit), no line breaks. "
        "May use `{{ name }}` placeholders (see `body`).",
    )  # fmt: skip
    body: Text | None = Field(
        None, max_length=MAX_BODY,
        description=f"Optional message template, at most {MAX_BODY} characters. Not returned by the API. "
        "`{{ name }}` is replaced by the recipient's `vars.name`; `{{ to }}` is the recipient's address. No logic, no "
        "filters. Every placeholder is checked against every recipient before anything is written: a recipient "
        "without a value is a 422 naming it (details `missingVariables`).",
    )  # fmt: skip
    send_at: SendAt = send_at_field("every message; the campaign is `scheduled` until then")
    recipients: Annotated[list[Any] | None, WithJsonSchema(RECIPIENTS_SCHEMA)] = Field(
        None,
        description="Non-empty list of at most the server's `NOTIFQ_MAX_CAMPAIGN_SIZE` entries. Each is an address in "
        "the channel's format, or `{to, vars}` with the values for the templates' placeholders. The 422 lists up to "
        f"{MAX_REPORTED} invalid entries by index (details `invalid`), or up to {MAX_REPORTED} recipients lacking a "
        "variable (details `missingVariables`: `{index, to, variables}`).",
    )
    recipient_count: Annotated[JsonInt | None, WithJsonSchema({"type": "integer", "minimum": 1})] = Field(
        None,
        description="How many synthetic recipients to generate (load-test mode), at most the server's "
        "`NOTIFQ_MAX_CAMPAIGN_SIZE`: user1@example.com …, +15550000001 …, mock-device-1 …; all go to the mock. "
        f"They have no variables, so the templates may only use {BUILTIN_NOTE} (else a 422).",
    )  # fmt: skip

    subscribers: Annotated[
        list[Annotated[str, Field(pattern=SUBSCRIBER_ID_PATTERN)]] | None,
        WithJsonSchema({"type": "array", "minItems": 1, "items": {"type": "string", "pattern": SUBSCRIBER_ID_PATTERN}}),
    ] = (
        Field(None, description="Subscriber ids (a message to an id without a profile when it is sent ends `skipped`, "
              "`no_address`). `{{ name }}` "
              "placeholders are filled from each subscriber's `data` when the message is sent (one without the "
              "value keeps the placeholder as written)."))  # fmt: skip
    category: Annotated[
        str | None, WithJsonSchema({"type": "string", "pattern": CATEGORY_PATTERN}), Field(pattern=CATEGORY_PATTERN)
    ] = Field(
        None,
        description="The preference category of every message (subscribers who turned it off for this channel "
        "are skipped, `opted_out`).",
    )

    @field_validator("recipients", mode="wrap")
    @classmethod
    def _not_validated_here(cls, value: Any, handler: Any) -> Any:
        """Entries are checked in `_whole`, which reports up to ten bad ones at once (by index)."""
        return value

    @model_validator(mode="after")
    def _whole(self, info: ValidationInfo) -> CampaignCreate:
        fields = self.model_fields_set
        audiences = [name for name in ("recipients", "recipient_count", "subscribers") if name in fields]
        if len(audiences) != 1:
            raise invalid("give exactly one of `recipients` (a list of addresses), `subscribers` (subscriber ids) or "
                          "`recipientCount`", {"fields": ["recipients", "subscribers", "recipientCount"]})  # fmt: skip
        if self.channel == Channel.INAPP and audiences != ["subscribers"]:
            raise invalid("an in-app campaign goes to `subscribers` (in-app messages have no address)",
                          {"field": "subscribers"})  # fmt: skip
        max_size = int((info.context or {}).get("max_campaign_size", 1_000_000))
        if "category" in fields and self.category is None:
            raise invalid("`category` must not be null", {"field": "category"})
        try:
            if audiences == ["subscribers"]:
                if not self.subscribers:
                    raise ValidationError("`subscribers` must be a non-empty list of subscriber ids",
                                          {"field": "subscribers"})  # fmt: skip
                if len(self.subscribers) > max_size:
                    raise ValidationError(f"`subscribers` has {len(self.subscribers)} entries; the limit is "
                                          f"{max_size}", {"field": "subscribers", "max": max_size})  # fmt: skip
            elif "recipient_count" in fields:
                check_synthetic(self.recipient_count, max_size, self.subject, self.body)
            else:
                parsed = check_recipients(self.recipients, self.channel, max_size, self.subject, self.body)
                object.__setattr__(self, "_parsed", parsed)
        except ValidationError as exc:
            raise invalid(exc.message, exc.details) from None
        return self

    def request(self) -> CampaignRequest:
        parsed = getattr(self, "_parsed", None)
        return CampaignRequest(self.name, self.subject, self.body, parsed,
                               self.recipient_count if parsed is None else None,
                               self.channel, self.send_at, self.subscribers, self.category)  # fmt: skip


class Progress(ApiModel):
    """How many of the campaign's messages are in each status; the values sum to totalMessages."""

    model_config = ConfigDict(extra="forbid")
    pending: int = Field(ge=0)
    queued: int = Field(ge=0)
    sending: int = Field(ge=0)
    sent: int = Field(ge=0)
    failed: int = Field(ge=0)
    cancelled: int = Field(ge=0)
    skipped: int = Field(
        ge=0, description="Not sent on purpose (opted out, no address, duplicate, throttled, suppressed)."
    )


class Deliverability(ApiModel):
    """What recipients and their servers reported (SES events, provider answers, unsubscribe links), and the
    guard that pauses the campaign when its hard-bounce or complaint rate passes NOTIFQ_MAX_BOUNCE_RATE or
    NOTIFQ_MAX_COMPLAINT_RATE (once NOTIFQ_GUARD_MIN_SENT messages were sent since it last resumed)."""

    model_config = ConfigDict(strict=False)
    bounces: int = Field(ge=0, description="Messages that hard-bounced (each counted once).")
    complaints: int = Field(ge=0, description="Messages their recipient marked as spam.")
    unsubscribes: int = Field(ge=0, description="Messages whose one-click unsubscribe link was used.")
    bounce_rate: float = Field(ge=0, description="bounces / messages attempted (sent or failed; 0 before any).")
    complaint_rate: float = Field(ge=0, description="complaints / messages attempted.")
    paused_reason: str | None = Field(description="Why the guard paused it (null unless paused by the guard); "
                                      "`POST /campaigns/{id}/resume` resumes it, and the guard then judges only what "
                                      "is sent after the resume.")  # fmt: skip

    @classmethod
    def of(cls, c: CampaignRow) -> Deliverability:
        f, sent = c.feedback, c.counts[MessageStatus.SENT] + c.counts[MessageStatus.FAILED]  # attempted
        return cls(bounces=f.bounces, complaints=f.complaints, unsubscribes=f.unsubscribes,
                   bounce_rate=f.bounces / sent if sent else 0.0, complaint_rate=f.complaints / sent if sent else 0.0,
                   paused_reason=f.paused_reason if c.status == CampaignStatus.PAUSED else None)  # fmt: skip


class Campaign(ApiModel):
    model_config = ConfigDict(strict=False)
    id: uuid.UUID
    name: str
    subject: str | None = Field(description="The subject template, as given.")
    status: CampaignStatus
    channel: Channel
    send_at: datetime | None = Field(description="When the campaign is (or was) due; null if sent at once.")
    total_messages: int = Field(ge=0)
    sent_count: int = Field(ge=0, description="Same as progress.sent.")
    failed_count: int = Field(ge=0, description="Same as progress.failed.")
    skipped_count: int = Field(
        ge=0,
        description="Same as progress.skipped: sent + failed + skipped + cancelled = "
        "totalMessages once it is finished.",
    )
    category: str | None = Field(description="The preference category its messages belong to, if any.")
    audience: Literal["addresses", "subscribers"] = Field(
        description="`subscribers`: each message goes to a subscriber's profile (address and preferences)."
    )
    progress: Progress
    deliverability: Deliverability
    created_at: datetime = Field(description="When the campaign was accepted.")
    updated_at: datetime = Field(description="Last change to the campaign or its counters.")
    completed_at: datetime | None = Field(
        description="When it reached completed, completed_with_failures or cancelled; null before."
    )

    @classmethod
    def of(cls, c: CampaignRow) -> Campaign:
        return cls(
            id=c.id, name=c.name, subject=c.subject, status=c.status, channel=c.channel, send_at=c.send_at,
            total_messages=c.total_messages, sent_count=c.counts[MessageStatus.SENT],
            failed_count=c.counts[MessageStatus.FAILED], skipped_count=c.counts[MessageStatus.SKIPPED],
            category=c.category, audience=c.audience, progress=Progress.model_validate(dict(c.counts)),
            deliverability=Deliverability.of(c), created_at=c.created_at, updated_at=c.updated_at,
            completed_at=c.completed_at,
        )  # fmt: skip


class Message(ApiModel):
    model_config = ConfigDict(strict=False)
    id: str = Field(pattern=r"^[0-9]+$", description="A 64-bit integer id, sent as a string; "
                    "GET /notifications/{id} shows its history.")  # fmt: skip
    recipient: str
    subscriber: str | None = Field(description="The subscriber it is for, if the campaign addresses subscribers.")
    status: MessageStatus
    skip_reason: SkipReason | None = Field(description="Why it was skipped (status `skipped`); null otherwise.")
    attempts: int = Field(ge=0, description="Delivery attempts so far (reset to 0 by a retry).")
    last_error: str | None = Field(description="The last delivery error, if any.")
    updated_at: datetime = Field(description="Last status change.")

    @classmethod
    def of(cls, m: MessageRow) -> Message:
        return cls(id=str(m.id), recipient=m.recipient, subscriber=m.subscriber_id, status=m.status,
                   skip_reason=m.skip_reason, attempts=m.attempts, last_error=m.last_error,
                   updated_at=m.updated_at)  # fmt: skip


class CampaignPage(Page[Campaign]):
    """Newest first."""


class MessagePage(Page[Message]):
    """In creation order."""


class RetryResult(ApiModel):
    requeued: int = Field(ge=0, description="How many failed messages went back to `queued`; 0 if there were none.")


class TimelinePoint(ApiModel):
    model_config = ConfigDict(strict=False)
    at: datetime = Field(description="The start of the bucket.")
    sent: int = Field(ge=0, description="Messages that finished `sent` in the bucket.")
    failed: int = Field(ge=0, description="Messages that finished `failed` (dead letters) in the bucket.")
    attempts: int = Field(ge=0, description="Delivery attempts started in the bucket (audit event `attempt`).")
    retried: int = Field(ge=0, description="Transient failures queued for another attempt (audit event `retry`).")


class Timeline(ApiModel):
    """Buckets with nothing in them are left out. `sent` and `failed` add up to the campaign's counts."""

    bucket_seconds: int = Field(ge=1, description="Width of each point's bucket.")
    points: list[TimelinePoint] = Field(description="Oldest first.")


CAMPAIGN_CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


class CampaignQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(50, 500)
    cursor: Annotated[str, Field(pattern=CURSOR_PATTERN)] | None = Field(
        None, description="`nextCursor` from the previous page.")  # fmt: skip
    status: CampaignStatus | None = Field(None, description="Only campaigns in this status.")


class MessageQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(100, 1000)
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = Field(
        None, description="`nextCursor` from the previous page.")  # fmt: skip
    status: MessageStatus | None = Field(None, description="Only messages in this status.")


def utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value else None
