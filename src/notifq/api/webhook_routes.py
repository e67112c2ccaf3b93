"""`POST /webhooks/ses`: SES events (bounces, complaints, deliveries) delivered by SNS.

Public: the SNS signature is the authentication. Nothing is written before the message is
verified (signature, certificate from an allowed URL, age, topic); a replay is harmless (each
SNS MessageId is applied once). SNS retries a delivery that got a 5xx or no answer, so an
outage of PostgreSQL or of the certificate's host answers 503, and a refusal 403 (SNS does
not retry a 4xx).
"""

from __future__ import annotations

import logging

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from notifq import ses_events
from notifq.api.contract import Operation, Reply, json_reply, read_body
from notifq.api.models.deliverability import SnsEnvelope, WebhookResult
from notifq.errors import Forbidden, ServiceUnavailable
from notifq.feedback import FeedbackService
from notifq.sns_verify import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsMessage,
    SnsRejected,
    SnsVerifier,
    parse,
)

log = logging.getLogger("notifq.api")
MAX_SNS_BODY = 320 * 1024  # SNS messages are at most 256 KiB, plus the envelope


def _refusal(exc: SnsRejected, what: str) -> ServiceUnavailable | Forbidden:
    """503 when our network or AWS failed (SNS retries a 5xx), else 403 (SNS does not retry a 4xx)."""
    if exc.retryable:
        return ServiceUnavailable(f"{what} failed for now: {exc.message}", {"reason": exc.code})
    log.warning("%s refused: %s", what, exc.code, extra={"reason": exc.code})
    return Forbidden(f"{what} refused: {exc.message}", {"reason": exc.code})


async def _verified(request: Request) -> SnsMessage:
    verifier: SnsVerifier = request.app.state.sns_verifier
    try:
        message = parse(await read_body(request, MAX_SNS_BODY))
        await verifier.verify(message)
    except SnsRejected as exc:
        raise _refusal(exc, "SNS message") from None
    return message


async def ses_webhook(request: Request) -> Response:
    message = await _verified(request)
    verifier: SnsVerifier = request.app.state.sns_verifier
    if message.type == SUBSCRIPTION_CONFIRMATION:
        try:
            await verifier.confirm_subscription(message)
        except SnsRejected as exc:
            raise _refusal(exc, "SNS subscription confirmation") from None
        log.info("SNS subscription confirmed for topic %s", message.topic_arn)
        return json_reply(WebhookResult(status="confirmed"))
    if message.type != NOTIFICATION:
        log.info("SNS says the subscription to %s ended", message.topic_arn)
        return json_reply(WebhookResult(status="unsubscribed"))
    try:
        event = ses_events.parse(message.message)
    except ses_events.NotSesEvent:
        log.info("SNS notification that is not an SES event ignored", extra={"reason": message.topic_arn})
        return json_reply(WebhookResult(status="ignored"))
    if not event.reports:
        return json_reply(WebhookResult(status="ignored", event_type=event.event_type))
    feedback: FeedbackService = request.app.state.feedback
    applied = await feedback.ses_event(message.message_id, event)
    answer = json_reply(WebhookResult(status="duplicate" if applied.duplicate else "applied",
                                      event_type=event.event_type, matched=applied.matched,
                                      suppressed=applied.suppressed))  # fmt: skip
    if applied.samples:  # the campaign guard decides after SNS has its answer
        answer.background = BackgroundTask(feedback.guard, applied.samples)
    return answer


OPERATIONS = [
    Operation("POST", "/webhooks/ses", ses_webhook, "sesWebhook", "Receive SES events through SNS",
              "deliverability", {200: Reply("Verified and handled.", WebhookResult)}, public=True,
              description="Subscribe this URL (HTTPS) to the SNS topics your SES identities or configuration sets "
              "publish Bounce, Complaint and Delivery events to, and list the topics in NOTIFQ_SNS_TOPICS "
              "(docs/deliverability.md has the AWS CLI commands). The body is SNS's JSON envelope (SNS sends it as "
              "`text/plain`). Every message is verified first: SignatureVersion 1 (SHA1) or 2 (SHA256), with the "
              "certificate at SigningCertURL, fetched only from URLs matching NOTIFQ_SNS_CERT_URL_REGEX (and "
              "cached); a message older than 7 days is refused. `SubscriptionConfirmation`: confirmed (its "
              "SubscribeURL fetched, only on the same URL pattern). `Notification`: a Permanent bounce suppresses "
              "the address (`hard_bounce`) and counts in its campaign's bounce rate, a Transient one is recorded in "
              "the message's audit trail only, a complaint suppresses (`complaint`), a Delivery sets deliveredAt. A "
              "campaign whose rates pass its limits is paused right after the answer. "
              "Events are matched to messages by SES's message id (the notification's providerMessageId). Each "
              f"SNS MessageId is applied once. The body is limited to {MAX_SNS_BODY} bytes.",
              body=SnsEnvelope, body_media_type="text/plain",
              errors=("Forbidden", "ValidationFailed", "PayloadTooLarge", "ServiceUnavailable")),
]  # fmt: skip
