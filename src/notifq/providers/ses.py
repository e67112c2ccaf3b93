"""AWS SES (SESv2 SendEmail) through boto3.

boto3 is blocking, so every call runs in a bounded thread pool owned by this provider:
a slow SES call never stalls the worker's event loop (and its other sends and leases).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError

from notifq.errors import PermanentError, ThrottledError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult

PERMANENT_CODES = frozenset({
    "MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException", "NotFoundException",
    "AccountSuspendedException", "SendingPausedException", "InvalidParameterValue", "ValidationError",
})  # fmt: skip
THROTTLE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"})


def classify(error: ClientError) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    message = f"SES {code}: {error.response.get('Error', {}).get('Message', '')}".strip()
    if code in THROTTLE_CODES:
        return ThrottledError(message)
    if code in PERMANENT_CODES:
        return PermanentError(message)
    return TransientError(message)


class SesProvider:
    name = "ses"

    def __init__(
        self, *, region: str, from_email: str, endpoint_url: str | None = None, max_threads: int = 32,
        timeout: float = 30.0, client: Any = None,
    ) -> None:  # fmt: skip
        self.from_email = from_email
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="ses")
        # One attempt only: botocore's own retry could re-send a SendEmail that SES already
        # accepted (a duplicate the worker could not count). notifq's retry schedule decides.
        config = Config(connect_timeout=min(5.0, timeout), read_timeout=timeout, retries={"total_max_attempts": 1},
                        max_pool_connections=max_threads)  # fmt: skip
        self._client = client or boto3.client("sesv2", region_name=region, endpoint_url=endpoint_url, config=config)

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
        loop = asyncio.get_running_loop()
        try:
            message_id = await loop.run_in_executor(self._pool, self._send_blocking, message)
        except ClientError as exc:
            raise classify(exc) from exc
        except (EndpointConnectionError, ConnectionError, BotoCoreError) as exc:
            raise TransientError(f"SES unreachable: {type(exc).__name__}: {exc}") from exc
        return SendResult(provider=self.name, provider_message_id=message_id or None)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
