"""notifq's one vocabulary: every status, event, lane and channel name, declared once.

`StrEnum` members are `str`s, so they go into SQL parameters, JSON and Redis as they are,
and SQL text that needs a literal interpolates the member (`f"'{MessageStatus.SENT}'"`),
never a copy of the string. The OpenAPI document lists the same members.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    INAPP = "inapp"  # the subscriber's inbox: stored in PostgreSQL, pushed live over WebSockets


ADDRESSED_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)  # those whose recipient is an address


class Lane(StrEnum):
    """A message's priority lane: transactional sends have their own queue, polled ahead of bulk work."""

    TRANSACTIONAL = "transactional"
    BULK = "bulk"


class MessageStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # decided not to send (see SkipReason); never reached a provider


TERMINAL_MESSAGE_STATUSES = frozenset(
    {MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.CANCELLED, MessageStatus.SKIPPED}
)


class SkipReason(StrEnum):
    """Why a message ended `skipped` (`messages.skip_reason`), decided when a worker claims it."""

    OPTED_OUT = "opted_out"
    NO_ADDRESS = "no_address"
    THROTTLED = "throttled"
    DUPLICATE = "duplicate"
    ERASED = "erased"
    SUPPRESSED = "suppressed"


SKIP_REASON_DESCRIPTIONS: dict[SkipReason, str] = {
    SkipReason.OPTED_OUT: "the subscriber turned this channel (or this category on this channel) off",
    SkipReason.NO_ADDRESS: "the subscriber has no address for the channel, or no profile (never created, or erased)",
    SkipReason.THROTTLED: "a bulk message over NOTIFQ_SUBSCRIBER_RATE_LIMIT for this subscriber and channel",
    SkipReason.DUPLICATE: "another message with the same subscriber and dedupKey within NOTIFQ_DEDUP_WINDOW",
    SkipReason.ERASED: "the subscriber was erased (DELETE /subscribers/{id}) before it was sent",
    SkipReason.SUPPRESSED: "the address is on the suppression list (GET /suppressions): a hard bounce, a "
    "complaint, an invalid push token, an SMS opt-out or a manual entry stops every message; an unsubscribe "
    "stops bulk messages (of its category, if it has one)",
}


class SuppressionReason(StrEnum):
    """Why an address is on the suppression list (`suppressions.reason`)."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBED = "unsubscribed"
    INVALID_TOKEN = "invalid_token"
    OPTED_OUT_SMS = "opted_out_sms"
    MANUAL = "manual"


SUPPRESSION_REASON_DESCRIPTIONS: dict[SuppressionReason, str] = {
    SuppressionReason.HARD_BOUNCE: "the receiving server refused the address for good (an SES permanent bounce, "
    "or an SMTP 5xx for the recipient)",
    SuppressionReason.COMPLAINT: "the recipient marked a message as spam (an SES complaint)",
    SuppressionReason.UNSUBSCRIBED: "the recipient used a one-click unsubscribe link (RFC 8058); stops bulk "
    "messages only, of one category when the message had one",
    SuppressionReason.INVALID_TOKEN: "FCM said the device token is unregistered or invalid",
    SuppressionReason.OPTED_OUT_SMS: "the phone number opted out of SMS (SNS `OptedOut`)",
    SuppressionReason.MANUAL: "added by an operator (POST /suppressions)",
}
# Reasons that stop every message to the address, transactional ones included (an OTP to a mailbox that
# does not exist bounces all the same); an unsubscribe only stops bulk messages.
BLOCKING_SUPPRESSION_REASONS = frozenset(set(SuppressionReason) - {SuppressionReason.UNSUBSCRIBED})


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    CANCELLED = "cancelled"


FINISHED_CAMPAIGN_STATUSES = frozenset(
    {CampaignStatus.COMPLETED, CampaignStatus.COMPLETED_WITH_FAILURES, CampaignStatus.CANCELLED}
)


class Event(StrEnum):
    """An audit-trail entry (`message_events.event`); the descriptions are served in the OpenAPI document."""

    ACCEPTED = "accepted"
    ATTEMPT = "attempt"
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    THROTTLED = "throttled"
    DEFERRED = "deferred"
    CONFIG_ERROR = "config_error"
    LOST = "lost"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"
    RELEASED = "released"
    REQUEUED = "requeued"
    REDRIVEN = "redriven"
    SKIPPED = "skipped"
    DELIVERED = "delivered"
    READ = "read"
    BOUNCED = "bounced"
    SOFT_BOUNCED = "soft_bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"


EVENT_DESCRIPTIONS: dict[Event, str] = {
    Event.ACCEPTED: "the notification was created (always the first event, at createdAt)",
    Event.ATTEMPT: "a worker took it and starts attempt N",
    Event.SENT: "the provider accepted it (`provider`; its id is the notification's providerMessageId)",
    Event.FAILED: "permanently failed: a permanent provider error, or the last attempt failed (`detail`)",
    Event.RETRY: "a transient error (`detail`); queued again after 1 s / 2 s / 4 s",
    Event.THROTTLED: "the provider asked to slow down; queued again after its hint, the attempt given back",
    Event.DEFERRED: "not attempted: the provider's circuit is open; it waits, the attempt given back",
    Event.CONFIG_ERROR: "the provider's configuration is wrong (credentials, sender, endpoint; `detail`): the "
    "provider is held and tried again every NOTIFQ_BREAKER_COOLDOWN seconds; it waits, the attempt given back",
    Event.LOST: "the worker died during the attempt; the reconciler queued it again (or failed it after the last)",
    Event.CANCELLED: "cancelled before it started",
    Event.PAUSED: "held because its campaign was paused (back to pending)",
    Event.RESUMED: "its campaign was resumed (back to queued)",
    Event.RELEASED: "its sendAt came; queued for delivery",
    Event.REQUEUED: "a campaign retry queued it again with fresh attempts",
    Event.REDRIVEN: "a dead-letter redrive queued it again with fresh attempts",
    Event.SKIPPED: "not sent, for the reason in `detail` (opted_out, no_address, throttled, duplicate, erased, "
    "suppressed)",
    Event.DELIVERED: "in-app: a client of the subscriber acknowledged it (ACK); email: SES reported delivery to the "
    "receiving server (`detail`: its SMTP answer); deliveredAt",
    Event.READ: "in-app: the subscriber read it; readAt",
    Event.BOUNCED: "a hard bounce (SES permanent bounce, or an SMTP 5xx for the recipient): the address is "
    "suppressed (`hard_bounce`); counts in the campaign's bounce rate; bouncedAt",
    Event.SOFT_BOUNCED: "a transient bounce reported by SES (mailbox full, …): recorded only",
    Event.COMPLAINED: "the recipient marked it as spam (SES complaint): the address is suppressed (`complaint`); "
    "counts in the campaign's complaint rate; complainedAt",
    Event.UNSUBSCRIBED: "the recipient used this message's one-click unsubscribe link (`detail`: what stopped)",
}


class FeedbackKind(StrEnum):
    """What a provider told notifq about a message after (or instead of) sending it."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    INVALID_TOKEN = "invalid_token"
    OPTED_OUT_SMS = "opted_out_sms"


FEEDBACK_EVENTS: dict[FeedbackKind, Event | None] = {
    FeedbackKind.HARD_BOUNCE: Event.BOUNCED,
    FeedbackKind.SOFT_BOUNCE: Event.SOFT_BOUNCED,
    FeedbackKind.COMPLAINT: Event.COMPLAINED,
    FeedbackKind.DELIVERY: Event.DELIVERED,
    FeedbackKind.INVALID_TOKEN: None,  # the message's `failed` event already says why
    FeedbackKind.OPTED_OUT_SMS: None,
}
FEEDBACK_SUPPRESSES: dict[FeedbackKind, SuppressionReason] = {
    FeedbackKind.HARD_BOUNCE: SuppressionReason.HARD_BOUNCE,
    FeedbackKind.COMPLAINT: SuppressionReason.COMPLAINT,
    FeedbackKind.INVALID_TOKEN: SuppressionReason.INVALID_TOKEN,
    FeedbackKind.OPTED_OUT_SMS: SuppressionReason.OPTED_OUT_SMS,
}


class WebhookEventType(StrEnum):
    """What an outbound webhook can subscribe to (`POST /webhooks` `events`). A message event is its audit
    event (`message.<event>`, the same rows as the notification's timeline); a campaign event is a change of
    the campaign's status."""

    MESSAGE_SENT = "message.sent"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_SKIPPED = "message.skipped"
    MESSAGE_RETRY = "message.retry"
    MESSAGE_CANCELLED = "message.cancelled"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_READ = "message.read"
    MESSAGE_BOUNCED = "message.bounced"
    MESSAGE_SOFT_BOUNCED = "message.soft_bounced"
    MESSAGE_COMPLAINED = "message.complained"
    MESSAGE_UNSUBSCRIBED = "message.unsubscribed"
    CAMPAIGN_STARTED = "campaign.started"
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_RESUMED = "campaign.resumed"
    CAMPAIGN_CANCELLED = "campaign.cancelled"
    CAMPAIGN_COMPLETED = "campaign.completed"
    WEBHOOK_TEST = "webhook.test"  # only sent by POST /webhooks/{id}/test; never subscribed to


MESSAGE_WEBHOOK_EVENTS: dict[WebhookEventType, Event] = {
    t: Event(t.value.removeprefix("message.")) for t in WebhookEventType if t.value.startswith("message.")
}
SUBSCRIBABLE_WEBHOOK_EVENTS = tuple(t for t in WebhookEventType if t != WebhookEventType.WEBHOOK_TEST)

WEBHOOK_EVENT_DESCRIPTIONS: dict[WebhookEventType, str] = {
    **{t: f"the notification's audit event `{e}`: {EVENT_DESCRIPTIONS[e]}" for t, e in MESSAGE_WEBHOOK_EVENTS.items()},
    WebhookEventType.CAMPAIGN_STARTED: "a campaign's first messages were queued (pending or scheduled -> processing)",
    WebhookEventType.CAMPAIGN_PAUSED: "a campaign was paused (by an operator, or by the bounce/complaint guard: "
    "`pausedReason`)",
    WebhookEventType.CAMPAIGN_RESUMED: "a paused campaign was resumed",
    WebhookEventType.CAMPAIGN_CANCELLED: "a campaign was cancelled",
    WebhookEventType.CAMPAIGN_COMPLETED: "every message of a campaign reached a final state (`status`: completed "
    "or completed_with_failures)",
    WebhookEventType.WEBHOOK_TEST: "sent by POST /webhooks/{id}/test only",
}


class WebhookOutcome(StrEnum):
    """What became of one POST to a webhook endpoint (`GET /webhooks/{id}/deliveries`)."""

    SUCCEEDED = "succeeded"  # a 2xx
    FAILED = "failed"  # another answer, or none; the events are tried again
    REFUSED = "refused"  # not sent: the URL resolved to an address that is not allowed
    ABANDONED = "abandoned"  # events older than NOTIFQ_WEBHOOK_GIVE_UP_SECONDS, given up after a failure


class Scope(StrEnum):
    """What an API key may do (`api_keys.scopes`); each operation declares the one it needs (api/contract.py).

    An admin's login token holds every scope; `admin` implies the others.
    """

    NOTIFICATIONS_SEND = "notifications:send"
    CAMPAIGNS_WRITE = "campaigns:write"
    READ = "read"
    ADMIN = "admin"


SCOPE_DESCRIPTIONS: dict[Scope, str] = {
    Scope.NOTIFICATIONS_SEND: "send notifications (POST /notifications, one or a batch); reads nothing, not even "
    "what it sent",
    Scope.CAMPAIGNS_WRITE: "create, retry, pause, resume and cancel campaigns, cancel a notification, redrive dead "
    "letters",
    Scope.READ: "read delivery data and figures: campaigns and their messages, notifications with their audit "
    "trail, dead letters, stats, workers, providers, live progress; issue a subscriber's inbox token",
    Scope.ADMIN: "everything, including what only admins do: subscriber profiles and preferences (read or write), "
    "suppressions, outbound webhooks, API keys",
}
