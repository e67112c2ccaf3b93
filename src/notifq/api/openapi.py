"""The OpenAPI 3.1 document served at GET /openapi.json.

Starlette has no schema generator, so this is written by hand and lives next to the
routes it describes (`routes.py`, `campaign_routes.py`, `notification_routes.py`,
`serializers.py`, `validation.py`): change a handler, change this file. Enums and limits
are imported from the code that enforces them so the two cannot drift; limits that are
settings are described with their defaults.

Every operation needs the bearer token (the document-level `security`) except the public
ones, which say `security: []`; the `/campaigns` operations also repeat it explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from notifq import __version__
from notifq.addresses import CHANNELS, E164_RE, EMAIL_RE, PUSH_TOKEN_RE
from notifq.api.notification_routes import MAX_BATCH
from notifq.api.openapi_ops import OPS_PATHS, OPS_SCHEMAS
from notifq.api.openapi_parts import BEARER, PUBLIC, ref
from notifq.auth import BCRYPT_MAX_BYTES
from notifq.db.campaigns_repo import CAMPAIGN_STATUSES, MESSAGE_STATUSES
from notifq.idempotency import ABANDONED_AFTER_SECONDS, KEY_TTL_SECONDS, MAX_KEY_LENGTH
from notifq.settings import Settings
from notifq.templates import BUILTINS
from notifq.validation import MAX_BODY, MAX_DATA_BYTES, MAX_NAME, MAX_REPORTED, MAX_SUBJECT, PRIORITIES

JSON: Final = "application/json"
_DEFAULTS: Final = Settings()
# Mirrors routes.MAX_LOGIN_BODY: routes.py imports this module, so it cannot be imported from there.
LOGIN_BODY_BYTES: Final = 16 * 1024
# Mirror the literals in notification_routes.redrive.
REDRIVE_BODY_BYTES: Final = 1024 * 1024
REDRIVE_MAX_IDS: Final = 10_000
# The audit trail's event names (serializers.notification_json, db/transitions.py, db/lifecycle.py,
# worker/delivery.py, worker/reconciler.py), with what each records.
EVENTS: Final[dict[str, str]] = {
    "accepted": "the notification was created (always the first event, at createdAt)",
    "attempt": "a worker took it and starts attempt N",
    "sent": "the provider accepted it (`provider`; its id is the notification's providerMessageId)",
    "failed": "permanently failed: a permanent provider error, or the last attempt failed (`detail`)",
    "retry": "a transient error (`detail`); queued again after 1 s / 2 s / 4 s",
    "throttled": "the provider asked to slow down; queued again after its hint, the attempt given back",
    "deferred": "not attempted: the provider's circuit is open; it waits, the attempt given back",
    "lost": "the worker died during the attempt; the reconciler queued it again (or failed it after the last)",
    "cancelled": "cancelled before it started",
    "paused": "held because its campaign was paused (back to pending)",
    "resumed": "its campaign was resumed (back to queued)",
    "released": "its sendAt came; queued for delivery",
    "requeued": "a campaign retry queued it again with fresh attempts",
    "redriven": "a dead-letter redrive queued it again with fresh attempts",
}
# Which schema a recipient must match on each channel; a missing `channel` means email.
ADDRESS_SCHEMAS: Final[dict[str, str]] = {"email": "EmailAddress", "sms": "PhoneNumber", "push": "PushToken"}
DEFAULT_CHANNEL: Final = "email"


def _schema(name: str) -> dict[str, str]:
    return ref("schemas", name)


def _response(name: str) -> dict[str, str]:
    return ref("responses", name)


def _param(name: str) -> dict[str, str]:
    return ref("parameters", name)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(_schema("Error"))}
    if headers:
        response["headers"] = headers
    return response


def _timestamp(description: str, *, nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if nullable else "string",
        "format": "date-time",
        "description": f"{description} ISO 8601 in UTC with a `Z` suffix.",
        "examples": ["2026-01-15T09:30:00.123456Z"],
    }


def _nullable_string(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


def _next_cursor() -> dict[str, Any]:
    return {"type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last page."}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Page size.",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _channel_param(description: str) -> dict[str, Any]:
    return {
        "name": "channel",
        "in": "query",
        "required": False,
        "description": description,
        "schema": _schema("Channel"),
    }


def _send_at(what: str) -> dict[str, Any]:
    return {
        "type": ["string", "null"],
        "format": "date-time",
        "description": (
            f"Optional: hold {what} until this time. ISO 8601 with a zone (`Z` or `+02:00`; without one it is a "
            "422); a time in the past means now; at most a year ahead."
        ),
        "examples": ["2026-01-15T09:30:00Z"],
    }


def _address_rules(constrain: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """`if`/`then` pairs tying the recipient format to `channel` (absent means email).

    `constrain(schema_name)` returns the object-level constraint that applies that address
    schema where the recipients are (a fresh dict per call, no shared nodes).
    """
    rules: list[dict[str, Any]] = []
    others = [c for c in CHANNELS if c != DEFAULT_CHANNEL]
    for channel in others:
        rules.append(
            {
                "if": {"required": ["channel"], "properties": {"channel": {"const": channel}}},
                "then": constrain(ADDRESS_SCHEMAS[channel]),
            }
        )
    rules.append(
        {
            "if": {"not": {"required": ["channel"], "properties": {"channel": {"enum": others}}}},
            "then": constrain(ADDRESS_SCHEMAS[DEFAULT_CHANNEL]),
        }
    )
    return rules


def _campaign_fields() -> dict[str, Any]:
    """The fields both forms of the create body share (a fresh dict per use, no shared nodes)."""
    return {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME,
            "pattern": r"^[^\r\n]*\S[^\r\n]*$",
            "description": f"Required, not blank, at most {MAX_NAME} characters, no line breaks.",
        },
        "channel": {
            **_schema("Channel"),
            "default": DEFAULT_CHANNEL,
            "description": "How every message of the campaign is delivered; decides what a valid recipient is.",
        },
        "subject": {
            "type": ["string", "null"],
            "maxLength": MAX_SUBJECT,
            "pattern": r"^[^\r\n]*$",
            "description": (
                f"Optional template; at most {MAX_SUBJECT} characters (RFC 5322's line limit), no line breaks. "
                "May use `{{ name }}` placeholders (see `body`)."
            ),
        },
        "body": {
            "type": ["string", "null"],
            "maxLength": MAX_BODY,
            "description": (
                f"Optional message template, at most {MAX_BODY} characters. Not returned by the API. "
                "`{{ name }}` (a letter or `_`, then letters, digits or `_`; spaces inside the braces optional) "
                "is replaced by the recipient's `vars.name`; `{{ to }}` is the recipient's address. No logic, no "
                "filters. Every placeholder is checked against every recipient before anything is written: a "
                "recipient without a value is a 422 naming it (details `missingVariables`)."
            ),
        },
        "sendAt": _send_at("every message; the campaign is `scheduled` until then"),
    }


_MAX_SIZE_NOTE: Final = f"at most the server's `NOTIFQ_MAX_CAMPAIGN_SIZE` (default {_DEFAULTS.max_campaign_size:,})"
_BUILTIN_NOTE: Final = ", ".join(f"`{{{{ {name} }}}}`" for name in sorted(BUILTINS))


def _recipient_entries(address: str) -> dict[str, Any]:
    return {
        "properties": {
            "recipients": {
                "items": {
                    "anyOf": [
                        _schema(address),
                        {"type": "object", "properties": {"to": _schema(address)}},
                    ]
                }
            }
        }
    }


def _notification_to(address: str) -> dict[str, Any]:
    return {"properties": {"to": _schema(address)}}


def _page(item: str, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": _schema(item), "description": description},
            "nextCursor": _next_cursor(),
        },
    }


SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error response (4xx and 5xx) has this shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable machine-readable code.",
                        "examples": [
                            "validation_error",
                            "unauthorized",
                            "not_found",
                            "conflict",
                            "too_many_attempts",
                            "payload_too_large",
                            "service_unavailable",
                            "method_not_allowed",
                            "internal_error",
                        ],
                    },
                    "message": {"type": "string", "description": "Human-readable explanation."},
                    "details": {
                        "description": (
                            'Any JSON value giving context, or null: e.g. `{"field": "limit"}`, '
                            '`{"maxBytes": 1024}`, `{"retryAfterSeconds": 300}`, '
                            '`{"field": "recipients", "invalid": [{"index": 3, "value": "x"}]}`, '
                            '`{"field": "recipients", "missingVariables": [{"index": 0, "to": "a@b.example", '
                            '"variables": ["name"]}]}`, `{"field": "[3].to", "value": "x"}` (in a batch), '
                            '`{"header": "Idempotency-Key", "reason": "key_reused"}`, `{"status": "completed"}`.'
                        ),
                    },
                },
            },
        },
        "examples": [
            {
                "error": {
                    "code": "validation_error",
                    "message": "`limit` must be an integer between 1 and 500",
                    "details": {"field": "limit"},
                }
            }
        ],
    },
    "LoginRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "minLength": 1, "description": "The admin's email address."},
            "password": {
                "type": "string",
                "minLength": 1,
                "maxLength": BCRYPT_MAX_BYTES,
                "description": f"At most {BCRYPT_MAX_BYTES} bytes once UTF-8 encoded (bcrypt's limit).",
            },
        },
    },
    "LoginResponse": {
        "type": "object",
        "required": ["token", "tokenType", "expiresAt"],
        "properties": {
            "token": {"type": "string", "description": "A JWT (HS256); send it as `Authorization: Bearer <token>`."},
            "tokenType": {"type": "string", "const": "Bearer"},
            "expiresAt": _timestamp(
                f"When the token stops being accepted (default lifetime {_DEFAULTS.jwt_ttl_seconds} s)."
            ),
        },
    },
    "Channel": {
        "type": "string",
        "enum": list(CHANNELS),
        "description": (
            "`email` (SES or SMTP), `sms` (SNS) or `push` (FCM), chosen per channel by the server's settings. "
            "Test recipients always go to the mock provider: email addresses at `NOTIFQ_MOCK_DOMAINS` (default "
            f"{', '.join(_DEFAULTS.mock_domains)}), numbers starting with `NOTIFQ_MOCK_PHONE_PREFIXES` (default "
            f"{', '.join(_DEFAULTS.mock_phone_prefixes)}) and push tokens starting with `NOTIFQ_MOCK_PUSH_PREFIX` "
            f"(default `{_DEFAULTS.mock_push_prefix}`)."
        ),
    },
    "Priority": {
        "type": "string",
        "enum": list(PRIORITIES),
        "description": (
            "The queue lane. Workers serve the `transactional` lane ahead of `bulk` (its own queue, polled every "
            "10 ms with its own job slots), so a one-off send never waits behind a campaign. Campaign messages are "
            "always `bulk`."
        ),
    },
    "EmailAddress": {
        "type": "string",
        "maxLength": 254,
        "pattern": f"^{EMAIL_RE.pattern}$",
        "description": "An address `local@domain`: no quotes, spaces, commas, CR/LF or angle brackets.",
        "examples": ["ada@example.com"],
    },
    "PhoneNumber": {
        "type": "string",
        "pattern": f"^{E164_RE.pattern}$",
        "description": "E.164: `+`, then 8 to 15 digits, the first not 0.",
        "examples": ["+15550000001"],
    },
    "PushToken": {
        "type": "string",
        "pattern": f"^{PUSH_TOKEN_RE.pattern}$",
        "description": "A device registration token: 1 to 4096 letters, digits and `:_-.`.",
        "examples": ["mock-device-1"],
    },
    "RecipientWithVars": {
        "type": "object",
        "required": ["to"],
        "properties": {
            "to": {"type": "string", "description": "The address, in the format of the campaign's channel."},
            "vars": {
                "type": "object",
                "description": (
                    "Values for the templates' `{{ name }}` placeholders. Strings; numbers are accepted and turned "
                    "into strings; anything else is a 422."
                ),
                "additionalProperties": {"type": ["string", "number"]},
                "examples": [{"name": "Ada", "code": "1234"}],
            },
        },
    },
    "CampaignCreate": {
        "description": (
            "Exactly one of `recipients` (explicit addresses) or `recipientCount` (load-test mode: synthetic "
            "recipients that all go to the mock provider). Sending both or neither is a 422. Unknown fields are "
            "ignored. Everything is checked before anything is written."
        ),
        "oneOf": [_schema("CampaignCreateWithRecipients"), _schema("CampaignCreateWithCount")],
    },
    "CampaignCreateWithRecipients": {
        "type": "object",
        "required": ["name", "recipients"],
        "properties": {
            **_campaign_fields(),
            "recipients": {
                "type": "array",
                "minItems": 1,
                "description": (
                    f"Non-empty list, {_MAX_SIZE_NOTE} entries. Each is an address in the channel's format, or "
                    "`{to, vars}` with the values for the templates' placeholders. The 422 lists up to "
                    f"{MAX_REPORTED} invalid entries by index (details `invalid`), or up to {MAX_REPORTED} "
                    "recipients lacking a variable (details `missingVariables`: `{index, to, variables}`)."
                ),
                "items": {"oneOf": [{"type": "string"}, _schema("RecipientWithVars")]},
            },
        },
        "allOf": _address_rules(_recipient_entries),
        "examples": [
            {"name": "Spring launch", "subject": "We're live", "recipients": ["ada@example.com"]},
            {
                "name": "Codes",
                "channel": "sms",
                "body": "Hi {{ name }}, your code is {{ code }}",
                "sendAt": "2026-01-15T09:30:00Z",
                "recipients": [{"to": "+15550000001", "vars": {"name": "Ada", "code": "1234"}}],
            },
        ],
    },
    "CampaignCreateWithCount": {
        "type": "object",
        "required": ["name", "recipientCount"],
        "properties": {
            **_campaign_fields(),
            "recipientCount": {
                "type": "integer",
                "minimum": 1,
                "description": (
                    f"How many synthetic recipients to generate: 1 to {_MAX_SIZE_NOTE}. By channel: "
                    "user1@example.com … userN@example.com, +15550000001 …, mock-device-1 …; all go to the mock. "
                    f"They have no variables, so the templates may only use {_BUILTIN_NOTE} (else a 422)."
                ),
            },
        },
        "examples": [{"name": "Load test", "recipientCount": 100000}],
    },
    "CampaignStatus": {
        "type": "string",
        "enum": list(CAMPAIGN_STATUSES),
        "description": (
            "scheduled → processing at `sendAt`; pending → processing → completed | completed_with_failures. "
            "`scheduled`: waiting for its sendAt; `pending`: committed, batches not yet on the queue; "
            "`processing`: batches queued; `paused`: held by POST …/pause (from scheduled, pending or processing) "
            "until POST …/resume; `completed_with_failures`: finished with at least one failed message; "
            "`cancelled`: from scheduled, pending, processing or paused. "
            "A retry (or a redrive) moves a finished campaign with requeued messages back to `processing`."
        ),
    },
    "MessageStatus": {
        "type": "string",
        "enum": list(MESSAGE_STATUSES),
        "description": (
            "pending → queued → sending → sent | failed, plus cancelled (from pending/queued). "
            "`pending`: held (a future sendAt, or a paused campaign); `queued`: waiting for a worker. "
            "Transient delivery errors go back to `queued` and are retried until the attempt limit; then the "
            "message is `failed` (a dead letter). Throttled or circuit-broken sends go back to `queued` "
            "without using up an attempt."
        ),
    },
    "Progress": {
        "type": "object",
        "description": "How many of the campaign's messages are in each status; the values sum to totalMessages.",
        "required": list(MESSAGE_STATUSES),
        "properties": {status: {"type": "integer", "minimum": 0} for status in MESSAGE_STATUSES},
        "additionalProperties": False,
    },
    "Campaign": {
        "type": "object",
        "required": [
            "id",
            "name",
            "subject",
            "status",
            "channel",
            "sendAt",
            "totalMessages",
            "sentCount",
            "failedCount",
            "progress",
            "createdAt",
            "updatedAt",
            "completedAt",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "subject": {"type": ["string", "null"], "description": "The subject template, as given."},
            "status": _schema("CampaignStatus"),
            "channel": _schema("Channel"),
            "sendAt": _timestamp("When the campaign is (or was) due; null if sent at once.", nullable=True),
            "totalMessages": {"type": "integer", "minimum": 0},
            "sentCount": {"type": "integer", "minimum": 0, "description": "Same as progress.sent."},
            "failedCount": {"type": "integer", "minimum": 0, "description": "Same as progress.failed."},
            "progress": _schema("Progress"),
            "createdAt": _timestamp("When the campaign was accepted."),
            "updatedAt": _timestamp("Last change to the campaign or its counters."),
            "completedAt": _timestamp(
                "When it reached completed, completed_with_failures or cancelled; null before.",
                nullable=True,
            ),
        },
    },
    "CampaignPage": _page("Campaign", "Newest first."),
    "Message": {
        "type": "object",
        "required": ["id", "recipient", "status", "attempts", "lastError", "updatedAt"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "A 64-bit integer id, sent as a string; GET /notifications/{id} shows its history.",
            },
            "recipient": {"type": "string"},
            "status": _schema("MessageStatus"),
            "attempts": {
                "type": "integer",
                "minimum": 0,
                "description": "Delivery attempts so far (reset to 0 by a retry).",
            },
            "lastError": {"type": ["string", "null"], "description": "The last delivery error, if any."},
            "updatedAt": _timestamp("Last status change."),
        },
    },
    "MessagePage": _page("Message", "In creation order."),
    "RetryResult": {
        "type": "object",
        "required": ["requeued"],
        "properties": {
            "requeued": {
                "type": "integer",
                "minimum": 0,
                "description": "How many failed messages went back to `queued`; 0 if there were none.",
            },
        },
    },
    "NotificationCreate": {
        "type": "object",
        "required": ["to", "body"],
        "description": "Unknown fields are ignored.",
        "properties": {
            "channel": {**_schema("Channel"), "default": DEFAULT_CHANNEL},
            "to": {
                "type": "string",
                "description": "The recipient, in the channel's format: email address, E.164 number or push token.",
            },
            "subject": {
                "type": ["string", "null"],
                "maxLength": MAX_SUBJECT,
                "pattern": r"^[^\r\n]*$",
                "description": f"Optional; one line (no CR/LF), at most {MAX_SUBJECT} characters. Push: the title.",
            },
            "body": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_BODY,
                "pattern": r"\S",
                "description": f"Required, not blank, at most {MAX_BODY} characters. Sent as is (no templates).",
            },
            "data": {
                "type": ["object", "null"],
                "additionalProperties": {"type": ["string", "number"]},
                "description": (
                    "Optional key/value payload (push data). String values (numbers are turned into strings), "
                    f"at most {MAX_DATA_BYTES} bytes as JSON."
                ),
            },
            "priority": {**_schema("Priority"), "default": "transactional"},
            "sendAt": _send_at("the notification (status `pending`); it can be cancelled until it is sent"),
        },
        "allOf": _address_rules(_notification_to),
        "examples": [
            {"channel": "sms", "to": "+15550000001", "body": "Your code is 1234"},
            {"to": "ada@example.com", "subject": "Welcome", "body": "Hello", "priority": "bulk"},
            {"channel": "push", "to": "mock-device-1", "subject": "Ping", "body": "Hi", "data": {"k": "v"}},
        ],
    },
    "NotificationBatch": {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH,
        "items": _schema("NotificationCreate"),
        "description": (
            f"The batch API: 1 to {MAX_BATCH} notifications, all created or none. A 422 names the offending item "
            'as a prefix of the field (`{"field": "[3].to"}`).'
        ),
    },
    "NotificationBatchResult": {
        "type": "object",
        "required": ["ids", "items"],
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "The new notifications' ids, in request order.",
            },
            "items": {
                "type": "array",
                "items": _schema("Notification"),
                "description": "The notifications, in request order.",
            },
        },
    },
    "EventName": {
        "type": "string",
        "enum": list(EVENTS),
        "description": "; ".join(f"`{name}`: {meaning}" for name, meaning in EVENTS.items()) + ".",
    },
    "NotificationEvent": {
        "type": "object",
        "required": ["at", "event", "attempt", "detail", "provider"],
        "properties": {
            "at": _timestamp("When it happened."),
            "event": _schema("EventName"),
            "attempt": {
                "type": ["integer", "null"],
                "description": "The attempt number the event belongs to (null for `accepted`).",
            },
            "detail": _nullable_string("The error text for retry, failed, throttled, deferred and lost; else null."),
            "provider": _nullable_string("The provider involved (e.g. `mock`, `ses`, `smtp`, `sns`, `fcm`), or null."),
        },
    },
    "Notification": {
        "type": "object",
        "description": "A single notification, or any campaign message seen through /notifications/{id}.",
        "required": [
            "id",
            "campaignId",
            "channel",
            "to",
            "subject",
            "priority",
            "status",
            "attempts",
            "provider",
            "providerMessageId",
            "lastError",
            "sendAt",
            "createdAt",
            "updatedAt",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "A 64-bit integer id, sent as a string."},
            "campaignId": {
                "type": ["string", "null"],
                "format": "uuid",
                "description": "The campaign it belongs to; null for a single notification.",
            },
            "channel": _schema("Channel"),
            "to": {"type": "string"},
            "subject": _nullable_string("The subject; null for campaign messages (their campaign holds the template)."),
            "priority": _schema("Priority"),
            "status": _schema("MessageStatus"),
            "attempts": {
                "type": "integer",
                "minimum": 0,
                "description": "Delivery attempts so far (reset to 0 by a retry or redrive).",
            },
            "provider": _nullable_string("The provider of the last attempt."),
            "providerMessageId": _nullable_string("The provider's id for the sent message."),
            "lastError": _nullable_string("The last delivery error, if any."),
            "sendAt": _timestamp("When it is held until; null if due at once.", nullable=True),
            "createdAt": _timestamp("When it was accepted."),
            "updatedAt": _timestamp("Last status change."),
            "events": {
                "type": "array",
                "items": _schema("NotificationEvent"),
                "description": "Only on GET /notifications/{id}: the audit trail, oldest first, from `accepted`.",
            },
        },
    },
    "NotificationWithEvents": {
        "allOf": [_schema("Notification"), {"type": "object", "required": ["events"]}],
    },
    "NotificationPage": _page("Notification", "Newest first."),
    "RedriveRequest": {
        "description": "Exactly one of `ids` or `filter`; both or neither is a 422.",
        "oneOf": [
            {
                "type": "object",
                "required": ["ids"],
                "not": {"required": ["filter"]},
                "properties": {
                    "ids": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": REDRIVE_MAX_IDS,
                        "items": {"type": ["string", "integer"], "pattern": "^[0-9]+$", "minimum": 1},
                        "description": "Message ids; those not `failed` are skipped.",
                    },
                },
            },
            {
                "type": "object",
                "required": ["filter"],
                "not": {"required": ["ids"]},
                "properties": {
                    "filter": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "Every dead letter matching; `{}` means all of them.",
                        "properties": {
                            "channel": _schema("Channel"),
                            "campaignId": {"type": "string", "format": "uuid"},
                        },
                    },
                },
            },
        ],
        "examples": [{"ids": ["1042", "1043"]}, {"filter": {"channel": "sms"}}],
    },
    "RedriveResult": {
        "type": "object",
        "required": ["redriven"],
        "properties": {
            "redriven": {
                "type": "integer",
                "minimum": 0,
                "description": "How many dead letters went back to `queued` with fresh attempts.",
            },
        },
    },
    "Stats": {
        "type": "object",
        "required": ["byStatus", "byChannel", "sentLastMinute", "sendRatePerSecond", "queueDepth"],
        "properties": {
            "byStatus": {
                "type": "object",
                "description": "Messages (single and campaign) per status; statuses with none are left out.",
                "propertyNames": _schema("MessageStatus"),
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "byChannel": {
                "type": "object",
                "description": "Per channel, messages per status (zeros left out).",
                "propertyNames": _schema("Channel"),
                "additionalProperties": {
                    "type": "object",
                    "propertyNames": _schema("MessageStatus"),
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            },
            "sentLastMinute": {"type": "integer", "minimum": 0, "description": "Messages sent in the last 60 s."},
            "sendRatePerSecond": {"type": "number", "minimum": 0, "description": "sentLastMinute / 60."},
            "queueDepth": {
                "type": "object",
                "description": "Delivery batches (jobs, not messages) in each lane's Redis queue.",
                "required": list(PRIORITIES),
                "properties": {lane: {"type": "integer", "minimum": 0} for lane in PRIORITIES},
            },
        },
        "examples": [
            {
                "byStatus": {"queued": 846, "sent": 151, "failed": 3},
                "byChannel": {"email": {"queued": 846, "sent": 150}, "sms": {"sent": 1, "failed": 3}},
                "sentLastMinute": 600,
                "sendRatePerSecond": 10.0,
                "queueDepth": {"transactional": 0, "bulk": 2},
            }
        ],
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {
                "type": "object",
                "required": ["postgres", "redis"],
                "description": "Each is `ok` or `unavailable: <exception type>` (2 s timeout per check).",
                "properties": {
                    "postgres": {"type": "string", "examples": ["ok", "unavailable: TimeoutError"]},
                    "redis": {"type": "string", "examples": ["ok", "unavailable: ConnectionError"]},
                },
            },
        },
    },
}

HEADERS: Final[dict[str, Any]] = {
    "RetryAfter": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "WWWAuthenticate": {
        "description": "The authentication scheme expected.",
        "schema": {"type": "string", "examples": ['Bearer realm="notifq"']},
    },
    "IdempotentReplayed": {
        "description": (
            "`true` when this response replays an earlier request with the same `Idempotency-Key` and body "
            "(nothing new was created); absent otherwise."
        ),
        "schema": {"type": "string", "const": "true"},
    },
}

_IDEMPOTENCY_NOTE: Final = (
    f"With an `Idempotency-Key` header (1 to {MAX_KEY_LENGTH} printable ASCII characters, per admin), the same "
    "key with the same request (method, path and JSON body; key order and whitespace do not matter) within "
    f"{KEY_TTL_SECONDS // 3600} h replays the first response: its status code, the created resources in their "
    "current state, and `Idempotent-Replayed: true`; nothing new is created. The same key with a different body "
    "is a 422; a duplicate arriving while the first is still being processed is a 409 (retry it shortly). A "
    f"request that failed frees its key, and a claim older than {ABANDONED_AFTER_SECONDS} s that never finished "
    "is taken over. The body is checked before the key, so an invalid body is a 422 whatever the key."
)

RESPONSES: Final[dict[str, Any]] = {
    "Unauthorized": _error_response(
        "Missing, malformed, expired or invalid bearer token (`unauthorized`).",
        {"WWW-Authenticate": ref("headers", "WWWAuthenticate")},
    ),
    "NotFound": _error_response("No campaign with that id (`not_found`)."),
    "NotificationNotFound": _error_response("No message with that id (`not_found`)."),
    "ValidationFailed": _error_response(
        "The request is invalid (`validation_error`); `details` names the offending field where there is one."
    ),
    "PayloadTooLarge": _error_response(
        'The request body is larger than allowed (`payload_too_large`, details `{"maxBytes": N}`).'
    ),
    "IdempotencyInProgress": _error_response(
        "A request with the same `Idempotency-Key` is still being processed (`conflict`, details "
        '`{"header": "Idempotency-Key"}`); retry shortly to get its response.'
    ),
    "ServiceUnavailable": _error_response(
        "PostgreSQL or Redis is unavailable (`service_unavailable`); nothing was changed, so the request is safe "
        "to repeat.",
        {"Retry-After": ref("headers", "RetryAfter")},
    ),
}

PARAMETERS: Final[dict[str, Any]] = {
    "CampaignId": {
        "name": "campaign_id",
        "in": "path",
        "required": True,
        "description": "The campaign's UUID; anything else is a 422.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "NotificationId": {
        "name": "notification_id",
        "in": "path",
        "required": True,
        "description": "A message id (a positive 64-bit integer); anything else is a 422.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Opaque `nextCursor` from the previous page; a malformed cursor is a 422.",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": _IDEMPOTENCY_NOTE,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x20-\\x7e]+$"},
    },
}


def _created(description: str, schema: str, *, location: str | None) -> dict[str, Any]:
    headers: dict[str, Any] = {"Idempotent-Replayed": ref("headers", "IdempotentReplayed")}
    if location:
        headers["Location"] = {"description": f"`{location}` of the new resource.", "schema": {"type": "string"}}
    return {"description": description, "headers": headers, "content": _json(_schema(schema))}


def _campaign_action(operation_id: str, summary: str, description: str, conflict: str) -> dict[str, Any]:
    return {
        "parameters": [_param("CampaignId")],
        "post": {
            "operationId": operation_id,
            "tags": ["campaigns"],
            "summary": summary,
            "description": description + " No request body.",
            "security": BEARER,
            "responses": {
                "202": {"description": "Done; the updated campaign.", "content": _json(_schema("Campaign"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "409": _error_response(conflict + ' (`conflict`, details `{"status": ...}`).'),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    }


PATHS: Final[dict[str, Any]] = {
    "/auth/login": {
        "post": {
            "operationId": "login",
            "tags": ["auth"],
            "summary": "Exchange an admin's email and password for a bearer token",
            "description": (
                f"Failed logins are counted per account and per client address; after "
                f"{_DEFAULTS.login_max_failures} failures (default) further attempts get a 429 for "
                f"{_DEFAULTS.login_lockout_seconds} s (default). The body is limited to {LOGIN_BODY_BYTES} bytes."
            ),
            "security": PUBLIC,
            "requestBody": {"required": True, "content": _json(_schema("LoginRequest"))},
            "responses": {
                "200": {"description": "Logged in.", "content": _json(_schema("LoginResponse"))},
                "401": _error_response(
                    "Wrong email or password (`unauthorized`).",
                    {"WWW-Authenticate": ref("headers", "WWWAuthenticate")},
                ),
                "413": _response("PayloadTooLarge"),
                "422": _error_response(
                    "Empty or malformed JSON, not an object, `email`/`password` missing or not a non-empty string, "
                    f"or a password over {BCRYPT_MAX_BYTES} bytes (`validation_error`)."
                ),
                "429": _error_response(
                    "Too many failed logins for this account or address (`too_many_attempts`, "
                    'details `{"retryAfterSeconds": N}`).',
                    {"Retry-After": ref("headers", "RetryAfter")},
                ),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns": {
        "post": {
            "operationId": "createCampaign",
            "tags": ["campaigns"],
            "summary": "Create a campaign and queue (or schedule) its messages",
            "description": (
                "The whole request (addresses in the channel's format, templates and every recipient's variables, "
                "`sendAt`) is checked before anything is written. The campaign and all its messages are then "
                "written in one PostgreSQL transaction; the delivery batches are queued in Redis after the commit. "
                "The response shows `processing` once the batches are queued; if Redis failed between the commit "
                "and the enqueue it shows `pending`, and the reconciler queues the batches later (nothing is lost). "
                "With a future `sendAt` the campaign is `scheduled` and its messages `pending` until then. "
                "Redis is checked first, so a 503 means nothing was written. "
                "The body is limited to `NOTIFQ_MAX_BODY_BYTES` "
                f"(default {_DEFAULTS.max_body_bytes} bytes).\n\n" + _IDEMPOTENCY_NOTE
            ),
            "security": BEARER,
            "parameters": [_param("IdempotencyKey")],
            "requestBody": {"required": True, "content": _json(_schema("CampaignCreate"))},
            "responses": {
                "202": _created(
                    "Accepted (or replayed); delivery proceeds in the background.",
                    "Campaign",
                    location="/campaigns/{id}",
                ),
                "401": _response("Unauthorized"),
                "409": _response("IdempotencyInProgress"),
                "413": _response("PayloadTooLarge"),
                "422": _error_response(
                    "Invalid request (`validation_error`): a field, invalid recipients (details `invalid`), a "
                    "recipient lacking a template variable (the message names it; details `missingVariables`), a "
                    "malformed `Idempotency-Key`, or the key reused with a different body (details "
                    '`{"header": "Idempotency-Key", "reason": "key_reused"}`).'
                ),
                "503": _response("ServiceUnavailable"),
            },
        },
        "get": {
            "operationId": "listCampaigns",
            "tags": ["campaigns"],
            "summary": "List campaigns, newest first",
            "description": "Keyset-paginated on (createdAt, id): follow `nextCursor` until it is null.",
            "security": BEARER,
            "parameters": [
                _limit(50, 500),
                _param("Cursor"),
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "Only campaigns in this status.",
                    "schema": _schema("CampaignStatus"),
                },
            ],
            "responses": {
                "200": {"description": "One page of campaigns.", "content": _json(_schema("CampaignPage"))},
                "401": _response("Unauthorized"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}": {
        "parameters": [_param("CampaignId")],
        "get": {
            "operationId": "getCampaign",
            "tags": ["campaigns"],
            "summary": "Get a campaign and its progress",
            "security": BEARER,
            "responses": {
                "200": {"description": "The campaign.", "content": _json(_schema("Campaign"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/messages": {
        "parameters": [_param("CampaignId")],
        "get": {
            "operationId": "listCampaignMessages",
            "tags": ["campaigns"],
            "summary": "List a campaign's messages in creation order",
            "description": (
                "Paginated by message id: follow `nextCursor` until it is null. A message's full history is at "
                "GET /notifications/{id}."
            ),
            "security": BEARER,
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "Only messages in this status.",
                    "schema": _schema("MessageStatus"),
                },
                _limit(100, 1000),
                _param("Cursor"),
            ],
            "responses": {
                "200": {"description": "One page of messages.", "content": _json(_schema("MessagePage"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/retry": {
        "parameters": [_param("CampaignId")],
        "post": {
            "operationId": "retryCampaign",
            "tags": ["campaigns"],
            "summary": "Requeue the campaign's failed messages",
            "description": (
                "Every `failed` message goes back to `queued` with its attempts reset to 0, in new batches; sent "
                "messages are never sent again. If any were requeued the campaign returns to `processing` (also "
                "from `completed_with_failures`); a paused campaign stays `paused` and they wait for the resume. "
                "No request body."
            ),
            "security": BEARER,
            "responses": {
                "202": {"description": "Requeued.", "content": _json(_schema("RetryResult"))},
                "401": _response("Unauthorized"),
                "404": _response("NotFound"),
                "409": _error_response(
                    'The campaign is scheduled, pending or cancelled (`conflict`, details `{"status": ...}`).'
                ),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/campaigns/{campaign_id}/cancel": _campaign_action(
        "cancelCampaign",
        "Cancel a scheduled, pending, processing or paused campaign",
        "`pending` and `queued` messages become `cancelled`; messages already `sending` finish and land in `sent` "
        "or `failed`. The campaign is `cancelled` at once, with completedAt set.",
        "The campaign is already completed, completed_with_failures or cancelled",
    ),
    "/campaigns/{campaign_id}/pause": _campaign_action(
        "pauseCampaign",
        "Pause a scheduled, pending or processing campaign",
        "The campaign becomes `paused`; its `queued` messages go back to `pending` (event `paused`) and workers "
        "hold any they claim meanwhile. Messages already `sending` finish and land in `sent` or `failed`.",
        "The campaign is already paused, completed, completed_with_failures or cancelled",
    ),
    "/campaigns/{campaign_id}/resume": _campaign_action(
        "resumeCampaign",
        "Resume a paused campaign",
        "The held messages go back to the queue (event `resumed`) and the campaign to `processing`, or to "
        "`scheduled` if its sendAt is still ahead. Only held messages move: what was sent is never sent again.",
        "The campaign is not paused",
    ),
    "/notifications": {
        "post": {
            "operationId": "createNotifications",
            "tags": ["notifications"],
            "summary": "Send one notification, or a batch of them",
            "description": (
                "A single object creates one notification: 202 with the notification and `Location`. A JSON array "
                f"of 1 to {MAX_BATCH} creates them all in one transaction (or none): 202 with their ids in request "
                "order. Status is `queued`, or `pending` with a future `sendAt`. Transactional ones go through their "
                "own queue lane, served ahead of bulk campaign work. Everything is checked before anything is "
                "written; Redis is checked first, so a 503 means nothing was written. The body is limited to "
                f"`NOTIFQ_MAX_BODY_BYTES` (default {_DEFAULTS.max_body_bytes} bytes).\n\n" + _IDEMPOTENCY_NOTE
            ),
            "parameters": [_param("IdempotencyKey")],
            "requestBody": {
                "required": True,
                "content": _json({"oneOf": [_schema("NotificationCreate"), _schema("NotificationBatch")]}),
            },
            "responses": {
                "202": {
                    "description": (
                        "Accepted (or replayed). For a single object: the notification, with `Location: "
                        "/notifications/{id}`. For an array: `{ids, items}` in request order, without `Location`."
                    ),
                    "headers": {
                        "Idempotent-Replayed": ref("headers", "IdempotentReplayed"),
                        "Location": {
                            "description": "`/notifications/{id}` of the new notification (single object only).",
                            "schema": {"type": "string"},
                        },
                    },
                    "content": _json({"oneOf": [_schema("Notification"), _schema("NotificationBatchResult")]}),
                },
                "401": _response("Unauthorized"),
                "409": _response("IdempotencyInProgress"),
                "413": _response("PayloadTooLarge"),
                "422": _error_response(
                    "Invalid request (`validation_error`): an address not in the channel's format (CR/LF or commas "
                    "in an email address, a number not E.164), a subject with a line break, a blank body, `data` "
                    f"not an object of strings or over {MAX_DATA_BYTES} bytes, an unknown channel or priority, a "
                    f"bad `sendAt`, an empty array or one over {MAX_BATCH} items (fields inside a batch are "
                    "prefixed `[i].`), a malformed `Idempotency-Key`, or the key reused with a different body."
                ),
                "503": _response("ServiceUnavailable"),
            },
        },
        "get": {
            "operationId": "listNotifications",
            "tags": ["notifications"],
            "summary": "List single notifications, newest first",
            "description": (
                "Only notifications created by POST /notifications (campaign messages are listed per campaign). "
                "Paginated by id: follow `nextCursor` until it is null."
            ),
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "description": "Only notifications in this status.",
                    "schema": _schema("MessageStatus"),
                },
                _channel_param("Only notifications on this channel."),
                {
                    "name": "to",
                    "in": "query",
                    "required": False,
                    "description": "Only notifications to exactly this recipient.",
                    "schema": {"type": "string"},
                },
                _limit(50, 500),
                _param("Cursor"),
            ],
            "responses": {
                "200": {"description": "One page of notifications.", "content": _json(_schema("NotificationPage"))},
                "401": _response("Unauthorized"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/notifications/{notification_id}": {
        "parameters": [_param("NotificationId")],
        "get": {
            "operationId": "getNotification",
            "tags": ["notifications"],
            "summary": "Get a notification (or any campaign message) with its audit trail",
            "description": (
                "Any message id works, campaign messages included. `events` is the audit trail, oldest first: "
                "`accepted`, then every transition and attempt with its time, attempt number, provider and error."
            ),
            "responses": {
                "200": {
                    "description": "The notification with `events`.",
                    "content": _json(_schema("NotificationWithEvents")),
                },
                "401": _response("Unauthorized"),
                "404": _response("NotificationNotFound"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/notifications/{notification_id}/cancel": {
        "parameters": [_param("NotificationId")],
        "post": {
            "operationId": "cancelNotification",
            "tags": ["notifications"],
            "summary": "Cancel a notification that has not started",
            "description": (
                "A `pending` (scheduled) or `queued` single notification becomes `cancelled` (event `cancelled`). "
                "No request body."
            ),
            "responses": {
                "202": {"description": "Cancelled; the notification.", "content": _json(_schema("Notification"))},
                "401": _response("Unauthorized"),
                "404": _response("NotificationNotFound"),
                "409": _error_response(
                    'Already sending, sent, failed or cancelled (`conflict`, details `{"status": ...}`), or a '
                    'campaign message (details `{"campaignId": ...}`: cancel the campaign instead).'
                ),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/dead-letters": {
        "get": {
            "operationId": "listDeadLetters",
            "tags": ["dead-letters"],
            "summary": "List permanently failed messages, newest first",
            "description": (
                "Every `failed` message, single or campaign, with its `lastError`. Paginated by id: follow "
                "`nextCursor` until it is null."
            ),
            "parameters": [
                _channel_param("Only dead letters on this channel."),
                {
                    "name": "campaignId",
                    "in": "query",
                    "required": False,
                    "description": "Only this campaign's dead letters; not a UUID is a 422.",
                    "schema": {"type": "string", "format": "uuid"},
                },
                _limit(50, 500),
                _param("Cursor"),
            ],
            "responses": {
                "200": {"description": "One page of dead letters.", "content": _json(_schema("NotificationPage"))},
                "401": _response("Unauthorized"),
                "422": _response("ValidationFailed"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/dead-letters/redrive": {
        "post": {
            "operationId": "redriveDeadLetters",
            "tags": ["dead-letters"],
            "summary": "Send dead letters again with fresh attempts",
            "description": (
                "The matching `failed` messages go back to `queued` with attempts reset to 0 (event `redriven`), "
                "in new batches in their own lane; a finished campaign they belong to returns to `processing`. "
                "Messages of cancelled campaigns are left alone. The body is limited to "
                f"{REDRIVE_BODY_BYTES} bytes."
            ),
            "requestBody": {"required": True, "content": _json(_schema("RedriveRequest"))},
            "responses": {
                "202": {"description": "Requeued.", "content": _json(_schema("RedriveResult"))},
                "401": _response("Unauthorized"),
                "413": _response("PayloadTooLarge"),
                "422": _error_response(
                    "Both or neither of `ids` and `filter`, `ids` not a list of 1 to "
                    f"{REDRIVE_MAX_IDS:,} message ids, or an unknown filter key, channel or malformed campaign id "
                    "(`validation_error`)."
                ),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/stats": {
        "get": {
            "operationId": "getStats",
            "tags": ["stats"],
            "summary": "Message counts, send rate and queue depth",
            "responses": {
                "200": {"description": "The statistics.", "content": _json(_schema("Stats"))},
                "401": _response("Unauthorized"),
                "503": _response("ServiceUnavailable"),
            },
        },
    },
    "/health": {
        "get": {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Liveness: the process answers",
            "security": PUBLIC,
            "description": "Touches neither PostgreSQL nor Redis.",
            "responses": {"200": {"description": "Alive.", "content": _json(_schema("Health"))}},
        },
    },
    "/ready": {
        "get": {
            "operationId": "ready",
            "tags": ["operations"],
            "summary": "Readiness: PostgreSQL and Redis both answer",
            "security": PUBLIC,
            "responses": {
                "200": {
                    "description": "Ready: `status` is `ready` and every check is `ok`.",
                    "content": _json(_schema("Readiness")),
                },
                "503": {
                    "description": "Not ready: `status` is `unavailable`; `checks` says which dependency failed.",
                    "content": _json(_schema("Readiness")),
                },
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "tags": ["operations"],
            "summary": "This OpenAPI 3.1 document",
            "security": PUBLIC,
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})},
            },
        },
    },
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "notifq",
        "version": __version__,
        "summary": "Notification engine: campaigns and single sends over email, SMS and push",
        "description": (
            "Send notifications by email, SMS and push, one at a time, in batches or as campaigns, and follow "
            "their delivery.\n\n"
            "Authenticate with `POST /auth/login`, then send `Authorization: Bearer <token>` to every operation "
            "except `/auth/login`, `/health`, `/ready`, `/metrics`, `/openapi.json` and the dashboard (`/`).\n\n"
            "Campaign lifecycle: scheduled | pending → processing → completed | completed_with_failures, "
            "plus paused (resumable) and cancelled.\n"
            "Message lifecycle: pending → queued → sending → sent | failed, plus cancelled. Every message, "
            "campaign ones included, is a notification: GET /notifications/{id} shows its audit trail.\n"
            "Lanes: `transactional` sends are served ahead of `bulk` campaign work.\n\n"
            "`Idempotency-Key` is honoured on POST /campaigns and POST /notifications.\n\n"
            "Every error, including 404/405 for unknown routes or methods and 500 `internal_error`, uses the "
            '`Error` envelope `{"error": {"code", "message", "details"}}`.'
        ),
        "license": {"name": "MIT", "identifier": "MIT"},
    },
    "tags": [
        {"name": "auth", "description": "Admin login."},
        {"name": "campaigns", "description": "Campaigns and their messages (bearer token required)."},
        {"name": "notifications", "description": "Single and batch sends and every message's history (bearer)."},
        {"name": "dead-letters", "description": "Permanently failed messages and their redrive (bearer)."},
        {"name": "stats", "description": "Counts, send rate and queue depth (bearer)."},
        {"name": "operations", "description": "Health, readiness, workers, metrics, the dashboard, this document."},
    ],
    "security": BEARER,
    "paths": {**PATHS, **OPS_PATHS},
    "components": {
        "schemas": {**SCHEMAS, **OPS_SCHEMAS},
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "headers": HEADERS,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The `token` returned by POST /auth/login (HS256 JWT).",
            },
        },
    },
}


def openapi_spec() -> dict[str, Any]:
    """The document, built once at import. Shared: callers must not mutate it."""
    return OPENAPI
