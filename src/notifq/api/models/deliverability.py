"""Bodies of the deliverability endpoints: the suppression list and the SES webhook's answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from notifq.addresses import LOOSE_PHONE_PATTERN, MAX_LOOSE_PHONE
from notifq.api.models.base import ApiModel, Limit, Page, Text, limit_field
from notifq.api.models.campaigns import ADDRESS_SCHEMAS
from notifq.db.suppressions_repo import Suppression as SuppressionRow
from notifq.vocabulary import SUPPRESSION_REASON_DESCRIPTIONS, Channel, SuppressionReason

REASONS_DOC = "; ".join(f"`{r}`: {d}" for r, d in SUPPRESSION_REASON_DESCRIPTIONS.items())
SuppressibleChannel = Literal["email", "sms", "push"]
CURSOR_PATTERN = r"^[0-9]{1,19}$"  # an entry's id: every such string is a cursor (a larger one reads as the largest)


class Suppression(ApiModel):
    model_config = ConfigDict(strict=False)
    channel: Channel
    address: str = Field(description="Normalised: the email's domain in lower case, phones in E.164.")
    category: str | None = Field(description="Only unsubscribes name one: the entry stops bulk messages of this "
                                 "category. null: every category.")  # fmt: skip
    reason: SuppressionReason = Field(description=REASONS_DOC + ".")
    detail: str | None = Field(description="What the provider said (bounce type and diagnostic, …).")
    message_id: str | None = Field(description="The message whose report put it here, if any.")
    campaign_id: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, s: SuppressionRow) -> Suppression:
        assert s.created_at is not None
        return cls(channel=s.channel, address=s.address, category=s.category, reason=s.reason, detail=s.detail,
                   message_id=str(s.message_id) if s.message_id is not None else None, campaign_id=s.campaign_id,
                   created_at=s.created_at)  # fmt: skip


class SuppressionPage(Page[Suppression]):
    """Newest first."""


class SuppressionQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    channel: SuppressibleChannel | None = Field(None, description="Only this channel.")
    reason: SuppressionReason | None = Field(None, description="Only this reason.")
    limit: Limit = limit_field(100, 1000)
    cursor: Annotated[str, Field(pattern=CURSOR_PATTERN)] | None = Field(None, description="`nextCursor`.")


def _create_schema(schema: dict[str, Any]) -> None:
    """The address's format follows `channel`, as the API checks it (a client can know a 422 in advance)."""
    address = {
        "email": ADDRESS_SCHEMAS[Channel.EMAIL],
        "sms": {"type": "string", "maxLength": MAX_LOOSE_PHONE, "pattern": LOOSE_PHONE_PATTERN},
        "push": ADDRESS_SCHEMAS[Channel.PUSH],
    }
    schema["allOf"] = [{"if": {"properties": {"channel": {"const": c}}}, "then": {"properties": {"address": a}}}
                       for c, a in address.items()]  # fmt: skip
    schema["examples"] = [{"channel": "email", "address": "former.customer@example.org", "reason": "manual"},
                          {"channel": "sms", "address": "+44 20 7946 0958", "detail": "asked by phone"}]  # fmt: skip


class SuppressionCreate(ApiModel):
    model_config = ConfigDict(json_schema_extra=_create_schema)
    channel: SuppressibleChannel
    address: Annotated[Text, Field(min_length=1, max_length=4096,
                                   description="An email address, a phone number (E.164, spaces, dots, dashes, "
                                   "slashes and brackets allowed, `00` for `+`) or a device token.")]  # fmt: skip
    reason: Literal["manual"] = Field("manual", description="Entries added by hand are `manual`; the other reasons "
                                      "come from providers and recipients.")  # fmt: skip
    detail: Annotated[Text, Field(max_length=500)] | None = Field(None, description="A note for other operators.")


class WebhookResult(ApiModel):
    model_config = ConfigDict(strict=False)
    status: Literal["applied", "duplicate", "ignored", "confirmed", "unsubscribed"] = Field(
        description="`applied`: the SES event changed what it reports; `duplicate`: this SNS MessageId was applied "
        "before (nothing changed); `ignored`: an event type notifq does not act on; `confirmed`: the subscription "
        "was confirmed; `unsubscribed`: SNS said the subscription ended (logged)."
    )
    event_type: Annotated[str | None, Field(description="SES's event type (Bounce, Complaint, Delivery, …).")] = None
    matched: Annotated[int, Field(ge=0, description="Reports about messages notifq sent.")] = 0
    suppressed: Annotated[int, Field(ge=0, description="Suppression entries written.")] = 0


class OneClick(ApiModel):
    """What mailbox providers POST (RFC 8058 §3.2). Not required: the signed URL alone decides."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=None)
    list_unsubscribe: Literal["One-Click"] | None = Field(None, alias="List-Unsubscribe")


class SnsEnvelope(ApiModel):
    """The JSON envelope SNS POSTs (as `text/plain`); every field it signs is checked against its signature."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=None, extra="allow")
    type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"] = Field(alias="Type")
    message_id: str = Field(alias="MessageId")
    topic_arn: str = Field(alias="TopicArn")
    message: str = Field(alias="Message")
    timestamp: str = Field(alias="Timestamp")
    signature_version: Literal["1", "2"] = Field(alias="SignatureVersion")
    signature: str = Field(alias="Signature")
    signing_cert_url: str = Field(alias="SigningCertURL")
