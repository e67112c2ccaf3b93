"""FcmProvider against a local FCM v1 + OAuth2 server that checks requests as Google documents them."""

# ruff: noqa: F811  (the fixtures imported below are parameters of the tests)

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifq.errors import (
    ConfigError,
    PermanentError,
    ProviderConfigError,
    RecipientRejected,
    ThrottledError,
    TransientError,
)
from notifq.providers.base import OutgoingMessage, SendResult
from notifq.providers.fcm import FCM_SCOPE, FcmProvider, classify, load_service_account, parse_retry_after
from tests.fcm_server import (  # noqa: F401  (fixtures)
    CLIENT_EMAIL,
    KEY_ID,
    PROJECT_ID,
    FakeFcmServer,
    fcm_private_key,
    fcm_server,
    google_error,
    write_service_account,
)
from tests.loop_probe import loop_ticks
from tests.smtp_server import free_port

MakeFcm = Callable[..., FcmProvider]
DEVICE = "dXNlci1kZXZpY2UtdG9rZW4:APA91bH-example_token"


def push(token: str = DEVICE, title: str = "Hello", body: str = "You have mail",
         data: dict[str, str] | None = None, message_id: int = 1) -> OutgoingMessage:  # fmt: skip
    return OutgoingMessage(message_id=message_id, attempt=1, recipient=token, subject=title, body=body,
                           channel="push", data=data)  # fmt: skip


@pytest.fixture
async def make_fcm(fcm_server: FakeFcmServer) -> AsyncIterator[MakeFcm]:
    """FcmProviders pointed at the fake server (unless told otherwise), closed after the test."""
    made: list[FcmProvider] = []

    def make(**kwargs: Any) -> FcmProvider:
        kwargs.setdefault("credentials_file", fcm_server.credentials_file)
        kwargs.setdefault("endpoint_url", fcm_server.url)
        kwargs.setdefault("timeout", 5.0)
        made.append(FcmProvider(**kwargs))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


# --- sending --------------------------------------------------------------------------------


async def test_push_is_sent_with_the_documented_shape(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """One token request (a verified JWT), then messages:send with notification and string data."""
    provider = make_fcm()
    data = {"orderId": "A-1042", "deepLink": "app://orders/A-1042", "emoji": "✓"}

    result = await provider.send(push(title="Grüße ✓", body="Your order shipped", data=data))

    assert isinstance(result, SendResult)
    assert result.provider == "fcm"
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith(f"projects/{PROJECT_ID}/messages/")
    assert fcm_server.sent == [{
        "project": PROJECT_ID,
        "message": {"token": DEVICE, "notification": {"title": "Grüße ✓", "body": "Your order shipped"}, "data": data},
    }]  # fmt: skip
    assert fcm_server.token_requests == 1
    [claims] = fcm_server.assertions
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == FCM_SCOPE
    assert claims["aud"] == fcm_server.token_uri
    assert claims["exp"] - claims["iat"] == 3600


async def test_without_subject_or_data_only_the_body_is_sent(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    await make_fcm().send(push(title="", body="Ping"))
    assert fcm_server.sent[0]["message"] == {"token": DEVICE, "notification": {"body": "Ping"}}


async def test_signed_assertion_claims_and_header(
    fcm_private_key: rsa.RSAPrivateKey, fcm_server: FakeFcmServer, make_fcm: MakeFcm
) -> None:
    """The JWT the provider signs: RS256 with the account's key id, Google's claims, one hour."""
    provider = make_fcm()
    assertion = provider.signed_assertion(now=int(time.time()))
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "RS256"
    assert header["kid"] == KEY_ID
    claims = jwt.decode(assertion, fcm_private_key.public_key(), algorithms=["RS256"], audience=fcm_server.token_uri,
                        options={"require": ["iss", "aud", "iat", "exp", "scope"]})  # fmt: skip
    assert claims["iss"] == CLIENT_EMAIL
    assert claims["scope"] == FCM_SCOPE
    assert claims["exp"] == claims["iat"] + 3600


async def test_access_token_is_cached_and_fetched_once_under_concurrency(
    fcm_server: FakeFcmServer, make_fcm: MakeFcm
) -> None:
    provider = make_fcm()
    await asyncio.gather(*(provider.send(push(message_id=i)) for i in range(20)))
    for i in range(5):
        await provider.send(push(message_id=100 + i))
    assert len(fcm_server.sent) == 25
    assert fcm_server.token_requests == 1
    assert provider.token_fetches == 1


async def test_access_token_is_refreshed_before_it_expires(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """A token is replaced shortly before `expires_in` runs out, without a 401 first."""
    fcm_server.token_lifetime = 1
    provider = make_fcm()
    await provider.send(push(message_id=1))
    await provider.send(push(message_id=2))
    assert fcm_server.token_requests == 1
    await asyncio.sleep(1.0)
    await provider.send(push(message_id=3))
    assert fcm_server.token_requests == 2
    assert fcm_server.requests == 3  # no request went out with the stale token


async def test_revoked_token_is_refreshed_once_and_the_send_retried(
    fcm_server: FakeFcmServer, make_fcm: MakeFcm
) -> None:
    provider = make_fcm()
    await provider.send(push(message_id=1))
    fcm_server.revoke_tokens()
    result = await provider.send(push(message_id=2))
    assert result.provider_message_id
    assert fcm_server.token_requests == 2
    assert fcm_server.requests == 3  # ok, 401, ok
    assert len(fcm_server.sent) == 2


async def test_401_after_a_fresh_token_is_a_configuration_error(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """A second 401 means our account is refused, not the message: the provider is held; only one retry."""
    fcm_server.refuse_tokens = True
    with pytest.raises(ProviderConfigError, match="401 UNAUTHENTICATED"):
        await make_fcm().send(push())
    assert fcm_server.token_requests == 2
    assert fcm_server.requests == 2
    assert fcm_server.sent == []


# --- FCM's error answers ----------------------------------------------------------------------


async def test_429_is_throttled_with_retry_after(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    fcm_server.fail_next(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="17")
    with pytest.raises(ThrottledError, match="429 QUOTA_EXCEEDED") as info:
        await make_fcm().send(push())
    assert info.value.retry_after == 17.0


async def test_503_is_throttled_with_or_without_retry_after(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    provider = make_fcm()
    fcm_server.fail_next(503, "UNAVAILABLE", "UNAVAILABLE")
    with pytest.raises(ThrottledError) as info:
        await provider.send(push())
    assert info.value.retry_after is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    fcm_server.fail_next(503, "UNAVAILABLE", retry_after=later)
    with pytest.raises(ThrottledError) as info:
        await provider.send(push())
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 31


async def test_500_is_transient(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    fcm_server.fail_next(500, "INTERNAL", "INTERNAL")
    with pytest.raises(TransientError, match="500 INTERNAL") as info:
        await make_fcm().send(push())
    assert type(info.value) is TransientError


async def test_unregistered_token_is_permanent(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    with pytest.raises(PermanentError, match="404 UNREGISTERED"):
        await make_fcm().send(push(token="unregistered-app-was-removed"))
    assert fcm_server.sent == []


async def test_invalid_argument_is_permanent(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """FCM refuses reserved data keys ("from") with 400 INVALID_ARGUMENT: not worth a retry."""
    with pytest.raises(PermanentError, match="400 INVALID_ARGUMENT"):
        await make_fcm().send(push(data={"from": "spoofed"}))


async def test_sender_id_mismatch_is_permanent(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    fcm_server.fail_next(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")
    with pytest.raises(PermanentError, match="403 SENDER_ID_MISMATCH"):
        await make_fcm().send(push())


async def test_wrong_project_is_a_configuration_error(
    fcm_server: FakeFcmServer, fcm_private_key: rsa.RSAPrivateKey, make_fcm: MakeFcm, tmp_path: Path
) -> None:
    """403 without SENDER_ID_MISMATCH is about our account's rights: every message would fail alike."""
    other = write_service_account(tmp_path / "other.json", fcm_private_key, fcm_server.token_uri, "other-project")
    with pytest.raises(ProviderConfigError, match="403 PERMISSION_DENIED") as info:
        await make_fcm(credentials_file=other).send(push())
    assert "NOTIFQ_FCM_CREDENTIALS_FILE" in str(info.value)


async def test_token_endpoint_refusing_our_key_is_a_configuration_error(
    fcm_server: FakeFcmServer, make_fcm: MakeFcm, tmp_path: Path
) -> None:
    """A key the token endpoint cannot verify (rotated or wrong): invalid_grant, the provider is held,
    nothing sent; the start-up check says the same."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = write_service_account(tmp_path / "wrong.json", stranger, fcm_server.token_uri)
    provider = make_fcm(credentials_file=wrong)
    with pytest.raises(ProviderConfigError, match="invalid_grant"):
        await provider.send(push())
    with pytest.raises(ProviderConfigError, match="invalid_grant"):
        await provider.check()
    assert fcm_server.requests == 0


async def test_check_fetches_a_token_and_sends_nothing(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    await make_fcm().check()
    assert (fcm_server.token_requests, fcm_server.requests) == (1, 0)


async def test_third_party_auth_error_is_transient(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """APNs or web-push credentials concern some devices only: not a reason to hold every push."""
    fcm_server.fail_next(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
    with pytest.raises(TransientError, match="THIRD_PARTY_AUTH_ERROR") as info:
        await make_fcm().send(push())
    assert type(info.value) is TransientError


# --- refused before any request ---------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "has space", "line\nbreak", "x" * 4097])
async def test_unusable_device_tokens_are_permanent(fcm_server: FakeFcmServer, make_fcm: MakeFcm, token: str) -> None:
    with pytest.raises(PermanentError, match="token"):
        await make_fcm().send(push(token=token))
    assert fcm_server.token_requests == 0


async def test_non_string_data_is_permanent(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    bad: Any = {"count": 3}
    with pytest.raises(PermanentError, match="strings"):
        await make_fcm().send(push(data=bad))
    assert fcm_server.requests == 0


# --- transport failures -----------------------------------------------------------------------


async def test_fcm_unreachable_is_a_configuration_error(fcm_server: FakeFcmServer, make_fcm: MakeFcm) -> None:
    """Nothing listens at NOTIFQ_FCM_ENDPOINT_URL: nothing was sent, every push would fail alike."""
    provider = make_fcm(endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderConfigError, match="unreachable") as info:
        await provider.send(push())
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "NOTIFQ_FCM_ENDPOINT_URL" in str(info.value)


async def test_token_endpoint_down_is_a_configuration_error(
    fcm_server: FakeFcmServer, fcm_private_key: rsa.RSAPrivateKey, make_fcm: MakeFcm, tmp_path: Path
) -> None:
    creds = write_service_account(tmp_path / "down.json", fcm_private_key, f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(ProviderConfigError, match="token endpoint unreachable"):
        await make_fcm(credentials_file=creds).send(push())


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def test_hanging_fcm_times_out_without_blocking_the_loop(make_fcm: MakeFcm, mute_port: int) -> None:
    provider = make_fcm(endpoint_url=f"http://127.0.0.1:{mute_port}", timeout=0.3)
    await provider._access_token()  # fetched from the fake server first
    started = time.monotonic()
    async with loop_ticks() as ticks:
        with pytest.raises(TransientError) as info:
            await provider.send(push())
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert time.monotonic() - started >= 0.25
    assert ticks.count >= 4


# --- classify() and Retry-After -----------------------------------------------------------------


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else b"<html>Bad gateway</html>"
    return httpx.Response(status, content=content, headers=headers)


@pytest.mark.parametrize(("status", "canonical", "fcm_code", "expected"), [
    (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", PermanentError),
    (404, "NOT_FOUND", "UNREGISTERED", RecipientRejected),
    (404, "NOT_FOUND", None, PermanentError), (403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", PermanentError),
    (403, "PERMISSION_DENIED", None, ProviderConfigError), (401, "UNAUTHENTICATED", None, ProviderConfigError),
    (401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", TransientError),
    (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", ThrottledError), (503, "UNAVAILABLE", "UNAVAILABLE", ThrottledError),
    (500, "INTERNAL", "INTERNAL", TransientError), (502, "UNKNOWN", None, TransientError),
])  # fmt: skip
def test_classify(status: int, canonical: str, fcm_code: str | None, expected: type[Exception]) -> None:
    error = classify(response(status, google_error(status, canonical, "details", fcm_code)))
    assert type(error) is expected
    assert str(status) in str(error) and (fcm_code or canonical) in str(error)


def test_classify_non_json_error_body() -> None:
    assert type(classify(response(502))) is TransientError
    assert type(classify(response(429, headers={"Retry-After": "3"}))) is ThrottledError


@pytest.mark.parametrize(("value", "expected"), [("17", 17.0), (" 0 ", 0.0), (None, None), ("", None),
                                                 ("soon", None), ("-5", None)])  # fmt: skip
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# --- credentials --------------------------------------------------------------------------------


def _rewrite(path: Path, **changes: Any) -> Path:
    info = json.loads(path.read_text())
    info.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del info[key]
    path.write_text(json.dumps(info))
    return path


@pytest.mark.parametrize(("changes", "match"), [
    ({"type": "authorized_user"}, "service-account"), ({"private_key": None}, "lacks private_key"),
    ({"project_id": "Bad/Project"}, "project_id"), ({"token_uri": "file:///etc/passwd"}, "token_uri"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}, "private_key"),
])  # fmt: skip
def test_bad_credentials_are_config_errors(
    fcm_server: FakeFcmServer, tmp_path: Path, changes: dict[str, Any], match: str
) -> None:
    path = tmp_path / "creds.json"
    path.write_text(fcm_server.credentials_file.read_text())
    with pytest.raises(ConfigError, match=match):
        load_service_account(_rewrite(path, **changes))


def test_non_rsa_key_is_a_config_error(fcm_server: FakeFcmServer, tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "creds.json"
    path.write_text(fcm_server.credentials_file.read_text())
    with pytest.raises(ConfigError, match="RSA"):
        load_service_account(_rewrite(path, private_key=pem.decode()))


@pytest.mark.parametrize("content", [None, "not json", "[]"])
def test_unreadable_credentials_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="FCM credentials file"):
        load_service_account(path)


def test_missing_credentials_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NOTIFQ_FCM_CREDENTIALS_FILE"):
        FcmProvider(credentials_file=None)


def test_service_account_repr_hides_the_key(fcm_server: FakeFcmServer) -> None:
    account = load_service_account(fcm_server.credentials_file)
    assert account.project_id == PROJECT_ID
    assert "private_key=" not in repr(account)
