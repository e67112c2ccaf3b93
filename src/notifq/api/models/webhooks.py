"""Bodies of the outbound webhook endpoints: POST/PATCH /webhooks, the endpoint, its delivery log, a test."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema

from notifq.api.contract import invalid
from notifq.api.models.base import ApiModel, Limit, Page, Text, Timestamp, limit_field
from notifq.api.models.deliverability import CURSOR_PATTERN
from notifq.db.webhook_endpoints_repo import Delivery, Endpoint
from notifq.vocabulary import SUBSCRIBABLE_WEBHOOK_EVENTS, WEBHOOK_EVENT_DESCRIPTIONS, WebhookOutcome
from notifq.webhook_http import MAX_URL_LENGTH, event_id, url_syntax_problem
from notifq.webhooks import MAX_DESCRIPTION, EndpointStatus, TestSent, status_of

# What `webhook_http.url_syntax_problem` lets through, as a JSON Schema pattern (both are checked, so the
# served document is never looser than the API): http or https, a host (a name or a bracketed IPv6 address),
# an optional port, then a path and query; no user name or password, no #fragment, no space or control.
URL_PATTERN = (r"^[Hh][Tt][Tt][Pp][Ss]?://(?:\[[0-9A-Fa-f:.]+\]|[^\x00-\x20\x7f/?#@\\:\[\]]+)(?::[0-9]{1,5})?"
               r"(?:[/?][^\x00-\x20\x7f#]*)?$")  # fmt: skip
_URL_RE = re.compile(URL_PATTERN)
EVENT_NAMES = [str(t) for t in SUBSCRIBABLE_WEBHOOK_EVENTS]
EVENTS_DOC = "; ".join(f"`{t}`: {WEBHOOK_EVENT_DESCRIPTIONS[t]}" for t in SUBSCRIBABLE_WEBHOOK_EVENTS)
STATUS_DOC = ("`active`: enabled and delivering; `failing`: enabled, its last deliveries failed, retried with "
              "backoff (`failingSince`, `lastError`); `disabled`: receives no events (`disabledReason`).")  # fmt: skip


def _url(value: str) -> str:
    if (problem := url_syntax_problem(value)) is not None:
        raise invalid(f"`{{field}}` {problem}", {"field": ""})
    if not _URL_RE.match(value):
        raise invalid("`{field}` must be http(s)://host[:port][/path][?query]", {"field": ""})
    return value


def _event(value: str) -> str:
    if value not in EVENT_NAMES:
        raise invalid("`{field}` is not an event type you can subscribe to", {"field": "", "allowed": EVENT_NAMES})
    return value


def _distinct(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise invalid("`{field}` names an event type twice", {"field": ""})
    return value


URL_DOC = ("Where events are POSTed: http(s), no user name or password, no #fragment. Its host must resolve, and "
           "(unless NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1) not to a loopback, private, link-local or metadata address: a "
           "422 otherwise. Checked again at every delivery.")  # fmt: skip
Url = Annotated[str, Field(max_length=MAX_URL_LENGTH, description=URL_DOC, json_schema_extra={"pattern": URL_PATTERN}),
                AfterValidator(_url)]  # fmt: skip
EventName = Annotated[str, AfterValidator(_event), WithJsonSchema({"type": "string", "enum": EVENT_NAMES})]
Events = Annotated[list[EventName], Field(min_length=1, max_length=len(EVENT_NAMES), json_schema_extra={
    "uniqueItems": True}, description="The event types to receive (each once): " + EVENTS_DOC + "."),
                   AfterValidator(_distinct)]  # fmt: skip
Description = Annotated[Text, Field(max_length=MAX_DESCRIPTION, description="A note for operators.")]
BATCH_DOC = ('`true`: up to 100 events per POST, as `{"events": [...]}` (`Notifq-Event-Id` then lists their ids, '
             "comma-separated); `false`: one event per POST.")  # fmt: skip


class WebhookCreate(ApiModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"url": "https://hooks.example.com/notifq", "events": ["message.sent", "message.failed",
                                                                "campaign.completed"],
         "description": "Order service"}]})  # fmt: skip
    url: Url
    events: Events
    description: Description = ""
    batch: bool = Field(False, description=BATCH_DOC)


class WebhookUpdate(ApiModel):
    """Only the fields sent change (null: unchanged)."""

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    batch: bool | None = Field(None, description=BATCH_DOC)
    enabled: bool | None = Field(None, description="`false`: receive nothing from now on (`disabledReason` says who "
                                 "turned it off); events in between are not kept for it. `true` on a disabled "
                                 "endpoint: deliver again, its failures forgotten (tried at once).")  # fmt: skip


class Webhook(ApiModel):
    model_config = ConfigDict(strict=False)
    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    batch: bool
    enabled: bool
    status: EndpointStatus = Field(description=STATUS_DOC)
    disabled_reason: str | None = Field(description="Why it is disabled: who turned it off, or how long it failed.")
    disabled_at: Timestamp | None
    failing_since: Timestamp | None = Field(description="The first failure since its last success (null: working).")
    last_success_at: Timestamp | None
    last_failure_at: Timestamp | None
    last_error: str | None = Field(description="What the last failed delivery got (`HTTP 500 …`, a timeout, a refused "
                                   "address).")  # fmt: skip
    pending: int = Field(ge=0, description="Events waiting to be delivered to it.")
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def fields_of(cls, e: Endpoint) -> dict[str, Any]:
        return {"id": e.id, "url": e.url, "description": e.description, "events": e.events, "batch": e.batch,
                "enabled": e.enabled, "status": status_of(e), "disabled_reason": e.disabled_reason,
                "disabled_at": e.disabled_at, "failing_since": e.failing_since, "last_success_at": e.last_success_at,
                "last_failure_at": e.last_failure_at, "last_error": e.last_error, "pending": e.pending,
                "created_at": e.created_at, "updated_at": e.updated_at}  # fmt: skip

    @classmethod
    def of(cls, e: Endpoint) -> Webhook:
        return cls(**cls.fields_of(e))


class WebhookCreated(Webhook):
    secret: str = Field(description="The signing secret (`whsec_…`): shown in this answer only, never again. "
                        "Receivers check `Notifq-Signature` with it (docs/webhooks.md).")  # fmt: skip

    @classmethod
    def created(cls, e: Endpoint) -> WebhookCreated:
        assert e.secret is not None
        return cls(**cls.fields_of(e), secret=e.secret)


class WebhookList(ApiModel):
    """Every endpoint, newest first."""

    items: list[Webhook]


OUTCOME_DOC = ("`succeeded`: a 2xx; `failed`: another answer or none (retried); `refused`: not sent, the URL "
               "resolved to an address the policy refuses; `abandoned`: events given up, not delivered within "
               "NOTIFQ_WEBHOOK_GIVE_UP_SECONDS.")  # fmt: skip


class WebhookDelivery(ApiModel):
    model_config = ConfigDict(strict=False)
    id: str = Field(description="The log entry's id (newest is largest).")
    event_ids: list[str] = Field(description="The events it carried (`evt_<n>`); empty for a test.")
    outcome: WebhookOutcome = Field(description=OUTCOME_DOC)
    response_status: int | None = Field(description="The receiver's HTTP status (null: no answer).")
    error: str | None
    duration_ms: int | None
    at: Timestamp

    @classmethod
    def of(cls, d: Delivery) -> WebhookDelivery:
        return cls(id=str(d.id), event_ids=[event_id(i) for i in d.event_ids], outcome=WebhookOutcome(d.outcome),
                   response_status=d.response_status, error=d.error, duration_ms=d.duration_ms, at=d.at)  # fmt: skip


class WebhookDeliveryPage(Page[WebhookDelivery]):
    """Newest first."""


class WebhookDeliveryQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    outcome: WebhookOutcome | None = Field(None, description="Only this outcome.")
    limit: Limit = limit_field(50, 1000)
    cursor: Annotated[str, Field(pattern=CURSOR_PATTERN)] | None = Field(None, description="`nextCursor`.")


class WebhookTestResult(ApiModel):
    model_config = ConfigDict(strict=False)
    event_id: str = Field(description="The test event's id (`evt_test_…`).")
    outcome: WebhookOutcome = Field(description=OUTCOME_DOC)
    response_status: int | None = Field(description="The receiver's HTTP status (null: no answer).")
    error: str | None
    duration_ms: int
    delivery: WebhookDelivery = Field(description="Its entry in the delivery log.")

    @classmethod
    def of(cls, sent: TestSent) -> WebhookTestResult:
        d = sent.delivery
        return cls(event_id=sent.event_id, outcome=WebhookOutcome(d.outcome), response_status=d.response_status,
                   error=d.error, duration_ms=d.duration_ms or 0, delivery=WebhookDelivery.of(d))  # fmt: skip
