"""AWS SES (SESv2 SendEmail) through boto3.

A bulk email carries List-Unsubscribe headers, so it is sent as Raw content built like SMTP's
(SESv2's Simple content can carry headers too, but moto, which the tests run against, drops them;
Raw is what both accept identically). Other emails use Simple content, built by SES.

boto3 is blocking, so every call runs in a bounded thread pool owned by this provider:
a slow SES call never stalls the worker's event loop (and its other sends and leases).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from notifq.errors import DeliveryError, ProviderConfigError
from notifq.providers import aws
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.smtp import compose

PERMANENT_CODES = frozenset({
    "MessageRejected", "BadRequestException", "NotFoundException", "InvalidParameterValue", "ValidationError",
})  # fmt: skip
# About our account or sender, not the message: every message would be refused alike.
CONFIG_CODES = frozenset({"MailFromDomainNotVerifiedException", "AccountSuspendedException",
                          "SendingPausedException"})  # fmt: skip
THROTTLE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"})


def classify(error: ClientError, from_email: str | None = None) -> DeliveryError:
    """SES error codes to outcomes. "Email address is not verified" names the identities that failed:
    our sender (configuration: hold) or, in the SES sandbox, only the recipient (that message fails)."""
    details = error.response.get("Error", {})
    text = str(details.get("Message", "")).lower()
    ours = from_email is not None and from_email.lower() in text
    if details.get("Code") == "MessageRejected" and "authority to send from" in text and ours:
        # How a Raw send (bulk email, with List-Unsubscribe) is refused for an unverified sender.
        return ProviderConfigError(f"SES MessageRejected: {details.get('Message', '')} "
                                   f"(verify the sender FROM_EMAIL {from_email} in SES)")  # fmt: skip
    if details.get("Code") == "MessageRejected" and "not verified" in text and (ours or "@" not in text):
        return ProviderConfigError(f"SES MessageRejected: {details.get('Message', '')} "
                                   f"(verify the sender FROM_EMAIL {from_email or ''} in SES)")  # fmt: skip
    return aws.classify(error, "SES", THROTTLE_CODES, PERMANENT_CODES, CONFIG_CODES)


class SesProvider:
    name = "ses"
    takes_unsubscribe_url = True  # bulk emails carry List-Unsubscribe (RFC 8058)

    def __init__(
        self, *, region: str, from_email: str, endpoint_url: str | None = None, max_threads: int = 32,
        timeout: float = 30.0, client: Any = None,
    ) -> None:  # fmt: skip
        self.from_email = from_email
        self._aws = aws.BlockingAwsClient("sesv2", region=region, endpoint_url=endpoint_url, timeout=timeout,
                                          max_threads=max_threads, client=client)  # fmt: skip

    def classify(self, error: ClientError) -> DeliveryError:
        return classify(error, self.from_email)

    def _send_blocking(self, message: OutgoingMessage) -> str:
        if message.unsubscribe_url:  # headers of our own: the MIME message is built here (as for SMTP)
            raw = compose(message, self.from_email, self.from_email.rpartition("@")[2]).as_bytes()
            response = self._aws.client.send_email(
                FromEmailAddress=self.from_email, Destination={"ToAddresses": [message.recipient]},
                Content={"Raw": {"Data": raw}},
            )  # fmt: skip
            return str(response.get("MessageId", ""))
        response = self._aws.client.send_email(
            FromEmailAddress=self.from_email,
            Destination={"ToAddresses": [message.recipient]},
            Content={"Simple": {
                "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": message.body, "Charset": "UTF-8"}},
            }},
        )  # fmt: skip
        return str(response.get("MessageId", ""))

    async def send(self, message: OutgoingMessage) -> SendResult:
        message_id = await self._aws.call("SES", self.classify, self._send_blocking, message)
        return SendResult(provider=self.name, provider_message_id=message_id or None)

    async def check(self) -> None:
        """Credentials and endpoint, without sending (see aws.BlockingAwsClient.check)."""
        await self._aws.check("SES")

    async def aclose(self) -> None:
        self._aws.close()
