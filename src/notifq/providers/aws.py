"""What the AWS providers (SES, SNS) share: a blocking boto3 client run in its own thread
pool, one attempt per call, and error codes mapped to notifq's outcomes at the edge.

One attempt only, because botocore's own retry could repeat a call that AWS had already
accepted: a second email or SMS that the worker could neither see nor count. notifq's
1 s / 2 s / 4 s schedule decides instead, and counts each attempt.

Configuration errors (no or refused credentials, a region or endpoint that cannot be reached)
hold the provider rather than fail messages. botocore reads credentials once, when a client
is made, so after one the client is made again, from a fresh boto3 session, before the next
call: credentials that appear later (a profile written, a role attached) are used without a
restart.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BaseEndpointResolverError,
    BotoCoreError,
    ClientError,
    ConfigParseError,
    CredentialRetrievalError,
    InvalidConfigError,
    InvalidRegionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from notifq.errors import DeliveryError, PermanentError, ProviderConfigError, ThrottledError, TransientError

T = TypeVar("T")

# Refused credentials or rights: the same for every message, whatever the service.
CONFIG_CODES = frozenset({
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "IncompleteSignature",
    "InvalidSignatureException", "MissingAuthenticationToken", "MissingAuthenticationTokenException",
    "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "AuthFailure", "AccessDenied",
    "AccessDeniedException", "NotAuthorized", "OptInRequired", "RequestExpired",
})  # fmt: skip
# botocore errors raised before a request leaves (credentials, region, profile) or while connecting
# (DNS, refused, connect timeout, TLS handshake, proxy): nothing reached AWS, every call fails alike.
CONFIG_EXCEPTIONS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound,
                     ConfigParseError, InvalidConfigError, BaseEndpointResolverError, InvalidRegionError,
                     BotoConnectionError)  # fmt: skip
NO_CREDENTIALS_HINT = ("boto3 found no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                       "or give the host a role")  # fmt: skip


def classify(error: ClientError, service: str, throttle: frozenset[str], permanent: frozenset[str],
             config: frozenset[str] = frozenset()) -> DeliveryError:  # fmt: skip
    """An AWS error code to an outcome; anything unknown (InternalError, KMS hiccups…) is retried."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = f"{service} {code}: {details.get('Message', '')}".strip()
    if code in throttle:
        return ThrottledError(message)
    if code in CONFIG_CODES or code in config:
        return ProviderConfigError(message)
    if code in permanent:
        return PermanentError(message)
    return TransientError(message)


def classify_botocore(error: BotoCoreError, label: str) -> DeliveryError:
    """A botocore error raised before or while reaching AWS; a read timeout or a dropped connection
    (AWS may have taken the message) stays transient."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return ProviderConfigError(f"{label}: {text} ({NO_CREDENTIALS_HINT})")
    if isinstance(error, BotoConnectionError):
        return ProviderConfigError(f"{label} unreachable (check AWS_REGION and the endpoint URL): {text}")
    if isinstance(error, CONFIG_EXCEPTIONS):
        return ProviderConfigError(f"{label}: {text}")
    return TransientError(f"{label} unreachable: {text}")


class BlockingAwsClient:
    def __init__(self, service: str, *, region: str, endpoint_url: str | None, timeout: float, max_threads: int,
                 client: Any = None) -> None:  # fmt: skip
        self.service, self.region, self.endpoint_url = service, region, endpoint_url
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=service)
        self._config = Config(connect_timeout=min(5.0, timeout), read_timeout=timeout,
                              retries={"total_max_attempts": 1}, max_pool_connections=max_threads)  # fmt: skip
        # Made in the pool on first use: resolving credentials may query instance metadata (blocking).
        self._client: Any = client
        self._session: boto3.session.Session | None = None
        self._rebuild = client is None  # a client handed in (tests) is kept as it is
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 client, made (or made again after a configuration error) on first use. Blocking."""
        with self._lock:
            if self._client is None:
                self._session = boto3.session.Session()
                self._client = self._session.client(
                    self.service,  # type: ignore[call-overload]  # boto3-stubs types each service separately
                    region_name=self.region, endpoint_url=self.endpoint_url, config=self._config,
                )  # fmt: skip
            return self._client

    def _forget_client(self) -> None:
        """After a configuration error: the next call makes a client from a fresh session. Calls still
        running on the old client finish (closing it only closes its idle connections)."""
        if not self._rebuild:
            return
        with self._lock:
            stale, self._client = self._client, None
        if stale is not None:
            stale.close()

    async def call(self, label: str, classify_error: Callable[[ClientError], DeliveryError],
                   fn: Callable[..., T], *args: Any) -> T:  # fmt: skip
        """Run a blocking call off the event loop; AWS errors come back as notifq outcomes."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except ClientError as exc:
            raise self._outcome(classify_error(exc)) from exc
        except BotoCoreError as exc:
            raise self._outcome(classify_botocore(exc, label)) from exc

    def _outcome(self, outcome: DeliveryError) -> DeliveryError:
        if isinstance(outcome, ProviderConfigError):
            self._forget_client()
        return outcome

    async def check(self, label: str) -> None:
        """At worker start: credentials found by boto3's chain, and the endpoint's host resolves.
        Raises ProviderConfigError saying what is wrong; sends nothing."""
        await self.call(label, lambda exc: classify(exc, label, frozenset(), frozenset()), self._check_blocking)

    def _check_blocking(self) -> None:
        client = self.client
        session = self._session or boto3.session.Session()
        if session.get_credentials() is None:
            raise NoCredentialsError()
        host = urlsplit(str(client.meta.endpoint_url)).hostname or ""
        try:
            socket.getaddrinfo(host, None)
        except OSError as exc:
            raise ProviderConfigError(f"cannot resolve {host} (check AWS_REGION and the endpoint URL): {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
