"""SMS through AWS SNS (Publish to a phone number) with boto3.

As with SES, boto3 blocks, so every call runs in a bounded thread pool owned by this
provider and the worker's event loop keeps serving other sends and leases meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from notifq.errors import DeliveryError, PermanentError, ThrottledError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
SMS_TYPES = ("Transactional", "Promotional")
THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequests", "TooManyRequestsException",
                            "KMSThrottling", "KMSThrottlingException"})  # fmt: skip
PERMANENT_CODES = frozenset({
    "InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "OptedOut", "OptedOutException",
    "EndpointDisabled", "EndpointDisabledException", "AuthorizationError", "AuthorizationErrorException",
    "ValidationError", "ValidationException",
})  # fmt: skip


def classify(error: ClientError) -> DeliveryError:
    """SNS error codes to outcomes; anything unknown (InternalError, KMS hiccups...) is retried."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = f"SNS {code}: {details.get('Message', '')}".strip()
    if code in THROTTLE_CODES:
        return ThrottledError(message)
    if code in PERMANENT_CODES:
        return PermanentError(message)
    return TransientError(message)


class SnsProvider:
    name = "sns"

    def __init__(
        self, *, region: str, endpoint_url: str | None = None, timeout: float = 30.0, max_threads: int = 32,
        sms_type: str = "Transactional", client: Any = None,
    ) -> None:  # fmt: skip
        if sms_type not in SMS_TYPES:
            raise ValueError(f"sms_type must be one of {SMS_TYPES}, got {sms_type!r}")
        self.sms_type = sms_type
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="sns")
        # One attempt only: a retried Publish that SNS had already accepted would text the person
        # twice. notifq's retry schedule decides, and counts the attempt.
        config = Config(connect_timeout=min(5.0, timeout), read_timeout=timeout, retries={"total_max_attempts": 1},
                        max_pool_connections=max_threads)  # fmt: skip
        self._client = client or boto3.client("sns", region_name=region, endpoint_url=endpoint_url, config=config)

    def _publish_blocking(self, message: OutgoingMessage) -> str:
        response = self._client.publish(
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
        loop = asyncio.get_running_loop()
        try:
            message_id = await loop.run_in_executor(self._pool, self._publish_blocking, message)
        except ClientError as exc:
            raise classify(exc) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, DNS: EndpointConnectionError and kin
            raise TransientError(f"SNS unreachable: {type(exc).__name__}: {exc}") from exc
        return SendResult(provider=self.name, provider_message_id=message_id or None)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
