"""SMS through AWS SNS (Publish to a phone number) with boto3.

As with SES, boto3 blocks, so every call runs in a bounded thread pool owned by this
provider and the worker's event loop keeps serving other sends and leases meanwhile.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from notifq.errors import DeliveryError, PermanentError, RecipientRejected
from notifq.providers import aws
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.vocabulary import FeedbackKind

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
SMS_TYPES = ("Transactional", "Promotional")
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequests", "TooManyRequestsException",
                            "KMSThrottling", "KMSThrottlingException"})  # fmt: skip
OPTED_OUT_CODES = frozenset({"OptedOut", "OptedOutException"})  # the number replied STOP: suppressed
PERMANENT_CODES = frozenset({
    "InvalidParameter", "InvalidParameterValue", "InvalidParameterException",
    "EndpointDisabled", "EndpointDisabledException", "ValidationError", "ValidationException",
})  # fmt: skip
# Our rights (IAM) rather than the message: every SMS would be refused alike.
CONFIG_CODES = frozenset({"AuthorizationError", "AuthorizationErrorException"})


def classify(error: ClientError) -> DeliveryError:
    """SNS error codes to outcomes; anything unknown (InternalError, KMS hiccups...) is retried."""
    details = error.response.get("Error", {})
    if str(details.get("Code", "")) in OPTED_OUT_CODES:
        return RecipientRejected(f"SNS {details.get('Code')}: {details.get('Message', '')}".strip(),
                                 FeedbackKind.OPTED_OUT_SMS)  # fmt: skip
    return aws.classify(error, "SNS", THROTTLE_CODES, PERMANENT_CODES, CONFIG_CODES)


class SnsProvider:
    name = "sns"

    def __init__(
        self, *, region: str, endpoint_url: str | None = None, timeout: float = 30.0, max_threads: int = 32,
        sms_type: str = "Transactional", client: Any = None,
    ) -> None:  # fmt: skip
        if sms_type not in SMS_TYPES:
            raise ValueError(f"sms_type must be one of {SMS_TYPES}, got {sms_type!r}")
        self.sms_type = sms_type
        self._aws = aws.BlockingAwsClient("sns", region=region, endpoint_url=endpoint_url, timeout=timeout,
                                          max_threads=max_threads, client=client)  # fmt: skip

    def _publish_blocking(self, message: OutgoingMessage) -> str:
        response = self._aws.client.publish(
            PhoneNumber=message.recipient,
            Message=message.body,
            MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": self.sms_type}},
        )
        return str(response.get("MessageId", ""))

    async def send(self, message: OutgoingMessage) -> SendResult:
        # The API checks numbers too; this keeps a bad row from costing an AWS round trip.
        if not E164.fullmatch(message.recipient):
            raise PermanentError(f"SNS needs an E.164 phone number (+ and up to 15 digits), got {message.recipient!r}")
        if not message.body:
            raise PermanentError("SNS cannot send an empty SMS")
        message_id = await self._aws.call("SNS", classify, self._publish_blocking, message)
        return SendResult(provider=self.name, provider_message_id=message_id or None)

    def _opted_out_blocking(self) -> list[str]:
        numbers: list[str] = []
        token: str | None = None
        while True:
            page = self._aws.client.list_phone_numbers_opted_out(**({"nextToken": token} if token else {}))
            numbers += [str(n) for n in page.get("phoneNumbers", [])]
            token = page.get("nextToken")
            if not token:
                return numbers

    async def opted_out_numbers(self) -> list[str]:
        """Every number that replied STOP (SNS keeps the list; Publish to such a number is dropped by SNS,
        often without an error, so the list is the one reliable source)."""
        return await self._aws.call("SNS", classify, self._opted_out_blocking)

    async def check(self) -> None:
        """Credentials and endpoint, without sending (see aws.BlockingAwsClient.check)."""
        await self._aws.check("SNS")

    async def aclose(self) -> None:
        self._aws.close()
