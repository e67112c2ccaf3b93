"""SesProvider against moto's real HTTP server, error classification, and the provider factory."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from notifq.errors import PermanentError, ProviderConfigError, ThrottledError, TransientError
from notifq.providers import aws
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.factory import ProviderFactory
from notifq.providers.mock import MockProvider
from notifq.providers.ses import CONFIG_CODES, PERMANENT_CODES, THROTTLE_CODES, SesProvider, classify
from notifq.settings import Settings
from tests.aws import moto_sent_messages, unique_address
from tests.loop_probe import loop_ticks
from tests.providers.conftest import MakeFactory

MakeSes = Callable[..., SesProvider]


def outgoing(recipient: str, subject: str = "Hello", body: str = "Body", message_id: int = 1) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, attempt=1, recipient=recipient, subject=subject, body=body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def make_ses() -> AsyncIterator[MakeSes]:
    """Builds SesProviders and closes them (their thread pools) after the test."""
    made: list[SesProvider] = []

    def make(**kwargs: Any) -> SesProvider:
        kwargs.setdefault("region", "us-east-1")
        provider = SesProvider(**kwargs)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


class SilentServer:
    """Accepts TCP connections and never answers, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


# --- sending through moto ---------------------------------------------------------------


async def test_send_succeeds_and_moto_records_the_message(
    moto_server: str, verified_sender: str, make_ses: MakeSes
) -> None:
    """A verified sender's message is accepted and moto stores its destination, subject and body."""
    provider = make_ses(from_email=verified_sender, endpoint_url=moto_server, timeout=5)
    recipient = unique_address("reader")
    subject, body = "Grüße ✓ launch", "Line one\nLine two — ünïcode"

    result = await provider.send(outgoing(recipient, subject, body))

    assert isinstance(result, SendResult)
    assert result.provider == "ses"
    assert result.provider_message_id
    stored = [m for m in await moto_sent_messages(moto_server) if m["id"] == result.provider_message_id]
    assert len(stored) == 1
    assert stored[0]["source"] == verified_sender
    assert stored[0]["destinations"] == {"ToAddresses": [recipient]}
    assert stored[0]["subject"] == subject
    assert stored[0]["body"] == body


async def test_each_send_gets_its_own_provider_message_id(
    moto_server: str, verified_sender: str, make_ses: MakeSes
) -> None:
    """Concurrent sends each return a distinct SES message id."""
    provider = make_ses(from_email=verified_sender, endpoint_url=moto_server, timeout=5)
    results = await asyncio.gather(*(provider.send(outgoing(unique_address("r"), message_id=i)) for i in range(5)))
    ids = {r.provider_message_id for r in results}
    assert len(ids) == 5
    assert None not in ids


async def test_unverified_sender_is_a_configuration_error(moto_server: str, make_ses: MakeSes) -> None:
    """SES's MessageRejected for our unverified sender would refuse every message alike: ProviderConfigError
    (the worker holds SES) naming the vendor code and FROM_EMAIL."""
    sender = unique_address("nobody")
    provider = make_ses(from_email=sender, endpoint_url=moto_server, timeout=5)
    with pytest.raises(ProviderConfigError, match="MessageRejected") as info:
        await provider.send(outgoing(unique_address("reader")))
    assert isinstance(info.value.__cause__, ClientError)
    assert sender in str(info.value) and "FROM_EMAIL" in str(info.value)


async def test_missing_credentials_are_a_configuration_error_until_they_appear(
    moto_server: str, verified_sender: str, make_ses: MakeSes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore reads credentials when a client is made; after NoCredentialsError the provider makes
    its client again, so credentials set later are used without a new provider (or a restart)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = make_ses(from_email=verified_sender, endpoint_url=moto_server, timeout=5)
    with pytest.raises(ProviderConfigError, match="NoCredentialsError") as info:
        await provider.send(outgoing(unique_address("reader")))
    assert isinstance(info.value.__cause__, NoCredentialsError)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    with pytest.raises(ProviderConfigError, match="NoCredentialsError"):
        await provider.check()

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    await provider.check()
    assert (await provider.send(outgoing(unique_address("reader")))).provider_message_id


async def test_check_passes_with_credentials_and_a_reachable_endpoint(
    moto_server: str, verified_sender: str, make_ses: MakeSes
) -> None:
    provider = make_ses(from_email=verified_sender, endpoint_url=moto_server, timeout=5)
    await provider.check()


async def test_check_names_an_endpoint_host_that_does_not_resolve(aws_credentials: None, make_ses: MakeSes) -> None:
    """A mistyped region makes an endpoint like email.us-esat-1.amazonaws.com: it does not resolve."""
    provider = make_ses(from_email="a@notifq.test", endpoint_url="https://email.nowhere.invalid", timeout=2)
    with pytest.raises(ProviderConfigError, match=r"cannot resolve email\.nowhere\.invalid"):
        await provider.check()


async def test_invalid_recipient_is_a_permanent_error(
    moto_server: str, verified_sender: str, make_ses: MakeSes
) -> None:
    """An address SES refuses as invalid (InvalidParameterValue) is not retried."""
    provider = make_ses(from_email=verified_sender, endpoint_url=moto_server, timeout=5)
    with pytest.raises(PermanentError, match="InvalidParameterValue"):
        await provider.send(outgoing("no-domain-here"))


# --- transport failures -----------------------------------------------------------------


async def test_closed_port_is_a_configuration_error(aws_credentials: None, make_ses: MakeSes) -> None:
    """A refused connection (a wrong endpoint or region; nothing reached SES) holds the provider:
    ProviderConfigError caused by EndpointConnectionError."""
    provider = make_ses(from_email="a@notifq.test", endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(ProviderConfigError, match="unreachable") as info:
        await provider.send(outgoing("reader@elsewhere.test"))
    assert isinstance(info.value.__cause__, EndpointConnectionError)
    assert "AWS_REGION" in str(info.value)


async def test_hanging_endpoint_times_out_without_blocking_the_event_loop(
    aws_credentials: None, make_ses: MakeSes, silent_server: SilentServer
) -> None:
    """While a send waits on an endpoint that never answers, other tasks keep running; it ends Transient."""
    provider = make_ses(from_email="a@notifq.test", endpoint_url=silent_server.url, timeout=0.3)
    started = time.monotonic()
    async with loop_ticks() as ticks:
        with pytest.raises(TransientError) as info:
            await provider.send(outgoing("reader@elsewhere.test"))
    elapsed = time.monotonic() - started

    assert isinstance(info.value.__cause__, ReadTimeoutError)
    assert elapsed >= 0.25  # the send really was in flight for a while...
    assert ticks.count >= 4  # ...and the loop kept ticking meanwhile (about elapsed / 0.05 ticks)


async def test_timed_out_send_is_attempted_only_once(
    aws_credentials: None, make_ses: MakeSes, silent_server: SilentServer
) -> None:
    """A timed-out SendEmail is not retried by botocore: the worker's retry policy owns retries."""
    provider = make_ses(from_email="a@notifq.test", endpoint_url=silent_server.url, timeout=0.2)
    with pytest.raises(TransientError):
        await provider.send(outgoing("reader@elsewhere.test"))
    await asyncio.sleep(0.1)  # let the accept thread record any late connection
    assert len(silent_server.connections) == 1


# --- classify() ---------------------------------------------------------------------------


def client_error(code: str, message: str = "details", operation: str = "SendEmail") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)  # type: ignore[typeddict-item]


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_classify_throttling_codes(code: str) -> None:
    """Throttling codes become ThrottledError (a TransientError) naming the code."""
    error = classify(client_error(code, "slow down"))
    assert type(error) is ThrottledError
    assert isinstance(error, TransientError)
    assert code in str(error)
    assert "slow down" in str(error)


@pytest.mark.parametrize("code", ["MessageRejected", "InvalidParameterValue", "NotFoundException"])
def test_classify_permanent_codes(code: str) -> None:
    """Rejections that retrying cannot fix become PermanentError."""
    assert code in PERMANENT_CODES
    error = classify(client_error(code))
    assert type(error) is PermanentError
    assert code in str(error)


@pytest.mark.parametrize("code", ["MailFromDomainNotVerifiedException", "AccountSuspendedException",
                                  "SendingPausedException", "InvalidClientTokenId", "UnrecognizedClientException",
                                  "SignatureDoesNotMatch", "AccessDenied", "AccessDeniedException",
                                  "ExpiredToken"])  # fmt: skip
def test_classify_configuration_codes(code: str) -> None:
    """Our account, sender, credentials or rights: every message alike, so the provider is held."""
    assert code in CONFIG_CODES | aws.CONFIG_CODES
    error = classify(client_error(code))
    assert type(error) is ProviderConfigError
    assert code in str(error)


SANDBOX = "Email address is not verified. The following identities failed the check in region US-EAST-1: "


@pytest.mark.parametrize(("failed", "expected"), [
    ("Sender@Mail.Test", ProviderConfigError),  # our sender (any case): hold
    ("sender@mail.test, reader@elsewhere.test", ProviderConfigError),
    ("reader@elsewhere.test", PermanentError),  # the SES sandbox refusing only this recipient: that message fails
])  # fmt: skip
def test_classify_unverified_names_whose_fault_it_is(failed: str, expected: type[Exception]) -> None:
    error = classify(client_error("MessageRejected", SANDBOX + failed), from_email="sender@mail.test")
    assert type(error) is expected


def test_classify_unverified_without_a_name_is_the_sender() -> None:
    error = classify(client_error("MessageRejected", "Email address is not verified."), from_email="s@mail.test")
    assert type(error) is ProviderConfigError


@pytest.mark.parametrize("code", ["InternalFailure", "ServiceUnavailable", "SomethingNew", ""])
def test_classify_unknown_codes_are_transient(code: str) -> None:
    """Unknown or server-side codes are retried as plain TransientError (not throttled)."""
    assert type(classify(client_error(code))) is TransientError


def test_classify_response_without_error_block() -> None:
    """A ClientError with no Error details still classifies (as transient) instead of crashing."""
    assert type(classify(ClientError({}, "SendEmail"))) is TransientError  # type: ignore[typeddict-item]


# --- ProviderFactory --------------------------------------------------------------------------


@pytest.fixture
def factory_for(aws_credentials: None, factory_for: MakeFactory) -> MakeFactory:
    """The shared factory_for (tests/providers/conftest.py), with moto's credentials in the environment."""
    return factory_for


@pytest.mark.parametrize("recipient", ["user@example.com", "User@EXAMPLE.COM", "x@Example.Com"])
async def test_factory_routes_mock_domain_to_mock(factory_for: MakeFactory, recipient: str) -> None:
    """The default mock domain (any case) is delivered by the mock provider."""
    factory = factory_for(Settings())
    provider = factory.for_recipient(recipient)
    assert isinstance(provider, MockProvider)
    assert provider is factory.mock


@pytest.mark.parametrize("recipient", ["user@gmail.com", "user@sub.example.com", "user@example.com.evil.test",
                                       "example.com@other.test"])  # fmt: skip
async def test_factory_routes_other_domains_to_ses(factory_for: MakeFactory, recipient: str) -> None:
    """Anything but an exact mock-domain match goes to SES, configured from settings, built once."""
    settings = Settings(
        from_email="campaigns@notifq.test", ses_endpoint_url="http://127.0.0.1:9", aws_region="eu-west-1"
    )
    factory = factory_for(settings)
    provider = factory.for_recipient(recipient)
    assert isinstance(provider, SesProvider)
    assert provider.from_email == "campaigns@notifq.test"
    assert factory.for_recipient("another@elsewhere.test") is provider


async def test_factory_builds_ses_lazily(factory_for: Callable[[Settings], ProviderFactory]) -> None:
    """Only mock recipients so far means no SES client has been created."""
    factory = factory_for(Settings())
    factory.for_recipient("a@example.com")
    assert "ses" not in factory._built


async def test_factory_honours_custom_mock_domains(factory_for: Callable[[Settings], ProviderFactory]) -> None:
    """With custom mock_domains, those domains are mocked and example.com is not."""
    factory = factory_for(Settings(mock_domains=("test.invalid", "loadtest.dev")))
    assert isinstance(factory.for_recipient("a@test.invalid"), MockProvider)
    assert isinstance(factory.for_recipient("b@LoadTest.dev"), MockProvider)
    assert isinstance(factory.for_recipient("c@example.com"), SesProvider)


async def test_factory_mock_uses_mock_settings(factory_for: Callable[[Settings], ProviderFactory]) -> None:
    """The mock provider is built from the mock_* settings."""
    factory = factory_for(Settings(mock_latency_ms=(5, 7), mock_failure_rate=0.25, mock_seed=99))
    mock = factory.for_recipient("a@example.com")
    assert isinstance(mock, MockProvider)
    assert (mock.latency_ms, mock.failure_rate, mock.seed) == ((5, 7), 0.25, 99)
