"""SnsProvider against moto's real HTTP server, transport failures, and error classification."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from notifq.errors import PermanentError, ProviderConfigError, RecipientRejected, ThrottledError, TransientError
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.sns import PERMANENT_CODES, THROTTLE_CODES, SnsProvider, classify
from notifq.vocabulary import FeedbackKind
from tests.loop_probe import loop_ticks
from tests.smtp_server import free_port

MakeSns = Callable[..., SnsProvider]


def sms(recipient: str = "+447700900123", body: str = "Your code is 123456", message_id: int = 1) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, attempt=1, recipient=recipient, subject="", body=body, channel="sms")


async def moto_sms(endpoint: str) -> list[dict[str, Any]]:
    """Every SMS moto's SNS has accepted (process-wide: filter by message id)."""
    async with httpx.AsyncClient(base_url=endpoint) as http:
        r = await http.get("/moto-api/data.json")
        r.raise_for_status()
        return list(r.json().get("sns", {}).get("SMS", []))


@pytest.fixture
async def make_sns(aws_credentials: None) -> AsyncIterator[MakeSns]:
    made: list[SnsProvider] = []

    def make(**kwargs: Any) -> SnsProvider:
        kwargs.setdefault("region", "us-east-1")
        made.append(SnsProvider(**kwargs))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def capture_requests(provider: SnsProvider) -> list[dict[str, list[str]]]:
    """The form fields of every Publish request as it leaves botocore (moto does not keep attributes)."""
    seen: list[dict[str, list[str]]] = []

    def record(request: Any, **_: Any) -> None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        seen.append(parse_qs(body))

    provider._aws.client.meta.events.register("before-send.sns.Publish", record)
    return seen


class SilentServer:
    """Accepts TCP connections (counting them) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def accepted(self) -> int:
        """Connections made so far (accepting them now does not change the count)."""
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.sock.close()


# --- through moto ---------------------------------------------------------------------------


async def test_sms_is_published_and_moto_records_it(moto_server: str, make_sns: MakeSns) -> None:
    """Publish to the phone number: moto stores number and text under the returned MessageId."""
    provider = make_sns(endpoint_url=moto_server, timeout=5)
    requests = capture_requests(provider)
    body = "Votre code : 123456 — ünïcode ✓"

    result = await provider.send(sms("+447700900123", body))

    assert isinstance(result, SendResult)
    assert result.provider == "sns"
    assert result.provider_message_id
    stored = [m for m in await moto_sms(moto_server) if m["message_id"] == result.provider_message_id]
    assert stored == [{"message_id": result.provider_message_id, "phone_number": "+447700900123", "message": body}]
    [fields] = requests
    assert fields["Action"] == ["Publish"]
    assert fields["PhoneNumber"] == ["+447700900123"]
    assert fields["MessageAttributes.entry.1.Name"] == ["AWS.SNS.SMS.SMSType"]
    assert fields["MessageAttributes.entry.1.Value.DataType"] == ["String"]
    assert fields["MessageAttributes.entry.1.Value.StringValue"] == ["Transactional"]


async def test_concurrent_sends_get_distinct_ids(moto_server: str, make_sns: MakeSns) -> None:
    provider = make_sns(endpoint_url=moto_server, timeout=5)
    results = await asyncio.gather(*(provider.send(sms(f"+4477009001{i:02d}", message_id=i)) for i in range(5)))
    ids = {r.provider_message_id for r in results}
    assert len(ids) == 5
    assert None not in ids


async def test_promotional_sms_type(moto_server: str, make_sns: MakeSns) -> None:
    provider = make_sns(endpoint_url=moto_server, timeout=5, sms_type="Promotional")
    requests = capture_requests(provider)
    await provider.send(sms())
    assert requests[0]["MessageAttributes.entry.1.Value.StringValue"] == ["Promotional"]


async def test_message_sns_refuses_is_permanent(moto_server: str, make_sns: MakeSns) -> None:
    """SNS's InvalidParameter (here: over 1,600 bytes) fails the message without retries."""
    provider = make_sns(endpoint_url=moto_server, timeout=5)
    with pytest.raises(PermanentError, match="InvalidParameter") as info:
        await provider.send(sms(body="x" * 1700))
    assert isinstance(info.value.__cause__, ClientError)


@pytest.mark.parametrize("number", ["447700900123", "+0447700900123", "+44 7700 900123", "+1234567890123456", "+",
                                    "abc", "+4477009001\n23", ""])  # fmt: skip
async def test_non_e164_numbers_are_refused_before_calling_aws(
    make_sns: MakeSns, silent_server: SilentServer, number: str
) -> None:
    """The check is local (moto would even accept a number without "+"); the endpoint is never contacted."""
    provider = make_sns(endpoint_url=silent_server.url, timeout=0.5)
    with pytest.raises(PermanentError, match=r"E\.164"):
        await provider.send(sms(number))
    assert silent_server.accepted() == 0


async def test_empty_body_is_refused(make_sns: MakeSns) -> None:
    provider = make_sns(endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(PermanentError, match="empty"):
        await provider.send(sms(body=""))


def test_unknown_sms_type_is_refused(aws_credentials: None) -> None:
    with pytest.raises(ValueError, match="sms_type"):
        SnsProvider(region="us-east-1", sms_type="Urgent")


# --- transport failures -----------------------------------------------------------------


async def test_closed_port_is_a_configuration_error(make_sns: MakeSns) -> None:
    """Nothing listens at the endpoint (a wrong endpoint or region): nothing reached SNS, SNS is held."""
    provider = make_sns(endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(ProviderConfigError, match="unreachable") as info:
        await provider.send(sms())
    assert isinstance(info.value.__cause__, EndpointConnectionError)


async def test_check_passes_against_moto(moto_server: str, make_sns: MakeSns) -> None:
    await make_sns(endpoint_url=moto_server, timeout=5).check()


async def test_hanging_endpoint_is_tried_once_without_blocking_the_loop(
    make_sns: MakeSns, silent_server: SilentServer
) -> None:
    """A Publish that never answers times out (transient) after one attempt: a retry could text twice."""
    provider = make_sns(endpoint_url=silent_server.url, timeout=0.3)
    started = time.monotonic()
    async with loop_ticks() as ticks:
        with pytest.raises(TransientError) as info:
            await provider.send(sms())
    assert isinstance(info.value.__cause__, ReadTimeoutError)
    assert time.monotonic() - started >= 0.25
    assert ticks.count >= 4
    await asyncio.sleep(0.1)  # a retry, if any, would connect by now
    assert silent_server.accepted() == 1


# --- classify() ---------------------------------------------------------------------------


def client_error(code: str, message: str = "details") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Publish")


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_classify_throttling(code: str) -> None:
    error = classify(client_error(code, "Rate exceeded"))
    assert type(error) is ThrottledError
    assert error.retry_after is None
    assert code in str(error) and "Rate exceeded" in str(error)


@pytest.mark.parametrize("code", ["InvalidParameter", "InvalidParameterValue", "EndpointDisabled", "ValidationError"])
def test_classify_permanent(code: str) -> None:
    assert code in PERMANENT_CODES
    error = classify(client_error(code))
    assert type(error) is PermanentError
    assert code in str(error)


@pytest.mark.parametrize("code", ["OptedOut", "OptedOutException"])
def test_an_opted_out_number_fails_and_is_suppressed(code: str) -> None:
    error = classify(client_error(code))
    assert type(error) is RecipientRejected and error.kind == FeedbackKind.OPTED_OUT_SMS
    assert code in str(error)


@pytest.mark.parametrize("code", ["AuthorizationError", "InvalidClientTokenId", "SignatureDoesNotMatch",
                                  "AccessDenied", "UnrecognizedClientException"])  # fmt: skip
def test_classify_configuration(code: str) -> None:
    """Refused rights or credentials: every SMS alike, so SNS is held (not a dead letter per message)."""
    error = classify(client_error(code))
    assert type(error) is ProviderConfigError
    assert code in str(error)


@pytest.mark.parametrize("code", ["InternalError", "ServiceUnavailable", "KMSDisabled", "SomethingNew", ""])
def test_classify_unknown_is_transient(code: str) -> None:
    assert type(classify(client_error(code))) is TransientError


def test_classify_without_error_block() -> None:
    assert type(classify(ClientError({}, "Publish"))) is TransientError
