"""What SES says about a sent email, read from the JSON it publishes to SNS.

Two publishers share the shape: identity notifications (`notificationType`) and configuration-set
event publishing (`eventType`). Both name the email by `mail.messageId`, the id SendEmail
returned (stored as the message's providerMessageId). Other event types (Send, Open, Click,
DeliveryDelay, …) are read as `ignored`, so subscribing a topic to more events does no harm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from notifq.vocabulary import FeedbackKind

MAX_DETAIL = 500


class NotSesEvent(ValueError):
    """The SNS message is not an SES notification notifq can read."""


@dataclass(frozen=True)
class SesReport:
    kind: FeedbackKind
    address: str
    detail: str | None


@dataclass(frozen=True)
class SesEvent:
    event_type: str  # SES's own name: Bounce, Complaint, Delivery, …
    ses_message_id: str | None
    reports: tuple[SesReport, ...]  # empty: nothing notifq acts on


def _text(value: Any) -> str | None:
    return value[:MAX_DETAIL] if isinstance(value, str) and value else None


def _join(*parts: Any) -> str | None:
    text = "; ".join(p for p in (_text(x) for x in parts) if p)
    return text[:MAX_DETAIL] or None


def _recipients(items: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and isinstance(item.get(key), str)]


def parse(message: str) -> SesEvent:
    try:
        body = json.loads(message)
    except ValueError as exc:
        raise NotSesEvent("the SNS Message is not JSON") from exc
    if not isinstance(body, dict):
        raise NotSesEvent("the SNS Message is not a JSON object")
    event_type = body.get("notificationType", body.get("eventType"))
    mail = body.get("mail")
    if not isinstance(event_type, str) or not isinstance(mail, dict):
        raise NotSesEvent("not an SES notification (no notificationType/eventType, or no mail)")
    ses_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    reports: list[SesReport] = []
    if event_type == "Bounce" and isinstance(bounce := body.get("bounce"), dict):
        # Only a Permanent bounce suppresses: Transient (mailbox full, …) and Undetermined may well recover.
        kind = FeedbackKind.HARD_BOUNCE if bounce.get("bounceType") == "Permanent" else FeedbackKind.SOFT_BOUNCE
        for r in _recipients(bounce.get("bouncedRecipients"), "emailAddress"):
            detail = _join(f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}", r.get("status"),
                           r.get("diagnosticCode"))  # fmt: skip
            reports.append(SesReport(kind, r["emailAddress"], detail))
    elif event_type == "Complaint" and isinstance(complaint := body.get("complaint"), dict):
        for r in _recipients(complaint.get("complainedRecipients"), "emailAddress"):
            detail = _join(complaint.get("complaintFeedbackType"), complaint.get("complaintSubType"))
            reports.append(SesReport(FeedbackKind.COMPLAINT, r["emailAddress"], detail))
    elif event_type == "Delivery" and isinstance(delivery := body.get("delivery"), dict):
        for address in delivery.get("recipients") or []:
            if isinstance(address, str):
                reports.append(SesReport(FeedbackKind.DELIVERY, address, _text(delivery.get("smtpResponse"))))
    return SesEvent(event_type, ses_id, tuple(reports))
