"""What the AWS providers (SES, SNS) share: a blocking boto3 client run in its own thread
pool, one attempt per call, and error codes mapped to notifq's outcomes at the edge.

One attempt only, because botocore's own retry could repeat a call that AWS had already
accepted: a second email or SMS that the worker could neither see nor count. notifq's
1 s / 2 s / 4 s schedule decides instead, and counts each attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from notifq.errors import DeliveryError, PermanentError, ThrottledError, TransientError

T = TypeVar("T")


def classify(error: ClientError, service: str, throttle: frozenset[str], permanent: frozenset[str]) -> DeliveryError:
    """An AWS error code to an outcome; anything unknown (InternalError, KMS hiccups…) is retried."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = f"{service} {code}: {details.get('Message', '')}".strip()
    if code in throttle:
        return ThrottledError(message)
    if code in permanent:
        return PermanentError(message)
    return TransientError(message)


class BlockingAwsClient:
    def __init__(self, service: str, *, region: str, endpoint_url: str | None, timeout: float, max_threads: int,
                 client: Any = None) -> None:  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=service)
        config = Config(connect_timeout=min(5.0, timeout), read_timeout=timeout, retries={"total_max_attempts": 1},
                        max_pool_connections=max_threads)  # fmt: skip
        self.client = client or boto3.client(
            service,  # type: ignore[call-overload]  # boto3-stubs types each service name separately
            region_name=region, endpoint_url=endpoint_url, config=config,
        )  # fmt: skip

    async def call(self, label: str, classify_error: Callable[[ClientError], DeliveryError],
                   fn: Callable[..., T], *args: Any) -> T:  # fmt: skip
        """Run a blocking call off the event loop; AWS errors come back as notifq outcomes."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except ClientError as exc:
            raise classify_error(exc) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, DNS: EndpointConnectionError and kin
            raise TransientError(f"{label} unreachable: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
