"""AWS SES (SESv2 SendEmail) through boto3.

boto3 is blocking, so every call runs in a bounded thread pool owned by this provider:
a slow SES call never stalls the worker's event loop (and its other sends and leases).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from notifq.errors import DeliveryError
from notifq.providers import aws
from notifq.providers.base import OutgoingMessage, SendResult

PERMANENT_CODES = frozenset({
    "MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException", "NotFoundException",
    "AccountSuspendedException", "SendingPausedException", "InvalidParameterValue", "ValidationError",
})  # fmt: skip
THROTTLE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"})


def classify(error: ClientError) -> DeliveryError:
    return aws.classify(error, "SES", THROTTLE_CODES, PERMANENT_CODES)


class SesProvider:
    name = "ses"

    def __init__(
        self, *, region: str, from_email: str, endpoint_url: str | None = None, max_threads: int = 32,
        timeout: float = 30.0, client: Any = None,
    ) -> None:  # fmt: skip
        self.from_email = from_email
        self._aws = aws.BlockingAwsClient("sesv2", region=region, endpoint_url=endpoint_url, timeout=timeout,
                                          max_threads=max_threads, client=client)  # fmt: skip
        self._client = self._aws.client

    def _send_blocking(self, message: OutgoingMessage) -> str:
        response = self._client.send_email(
            FromEmailAddress=self.from_email,
            Destination={"ToAddresses": [message.recipient]},
            Content={"Simple": {
                "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": message.body, "Charset": "UTF-8"}},
            }},
        )  # fmt: skip
        return str(response.get("MessageId", ""))

    async def send(self, message: OutgoingMessage) -> SendResult:
        message_id = await self._aws.call("SES", classify, self._send_blocking, message)
        return SendResult(provider=self.name, provider_message_id=message_id or None)

    async def aclose(self) -> None:
        self._aws.close()
