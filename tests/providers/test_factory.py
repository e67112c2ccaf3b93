"""ProviderFactory: a provider whose settings are wrong waits for the fix (and takes it without a
restart), and the worker's start-up check names what is wrong per channel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from notifq.errors import ProviderConfigError
from notifq.providers.base import OutgoingMessage
from notifq.providers.factory import Unconfigured
from notifq.providers.fcm import FcmProvider
from notifq.settings import Settings
from tests.fcm_server import FakeFcmServer
from tests.providers.conftest import MakeFactory
from tests.smtp_server import SMTP_PASSWORD, SMTP_USER, SmtpTestServer, free_port


def push(token: str = "real-device-token") -> OutgoingMessage:
    return OutgoingMessage(message_id=1, attempt=1, recipient=token, subject="Hi", body="Hello", channel="push")


async def test_a_missing_fcm_key_file_is_held_then_used_once_it_appears(
    factory_for: MakeFactory, fcm_server: FakeFcmServer, tmp_path: Path
) -> None:
    path = tmp_path / "service-account.json"
    factory = factory_for(Settings(push_provider="fcm", fcm_credentials_file=str(path),
                                   fcm_endpoint_url=fcm_server.url))  # fmt: skip
    stand_in = factory.for_message("push", "real-device-token")
    assert isinstance(stand_in, Unconfigured) and stand_in.name == "fcm"
    with pytest.raises(ProviderConfigError, match="unreadable") as info:
        await stand_in.send(push())
    assert str(path) in str(info.value)

    shutil.copy(fcm_server.credentials_file, path)
    assert (await stand_in.send(push())).provider == "fcm"
    assert isinstance(factory.for_message("push", "real-device-token"), FcmProvider)  # the stand-in steps aside
    assert len(fcm_server.sent) == 1


async def test_check_names_each_channels_problem(
    factory_for: MakeFactory, smtp_server: SmtpTestServer, fcm_server: FakeFcmServer, tmp_path: Path
) -> None:
    """SMTP logs in (fine), FCM's key file is missing, SMS goes to the mock (not checked)."""
    missing = tmp_path / "absent.json"
    factory = factory_for(Settings(
        email_provider="smtp", smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none",
        smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD, sms_provider="mock", push_provider="fcm",
        fcm_credentials_file=str(missing), fcm_endpoint_url=fcm_server.url,
    ))  # fmt: skip
    problems = await factory.check(within=5)
    assert set(problems) == {"email", "push"}
    assert problems["email"] is None
    assert problems["push"] is not None and str(missing) in problems["push"]
    assert smtp_server.received == []


async def test_check_reports_a_wrong_smtp_password_and_a_dead_port(
    factory_for: MakeFactory, smtp_server: SmtpTestServer
) -> None:
    wrong = factory_for(Settings(email_provider="smtp", smtp_host=smtp_server.host, smtp_port=smtp_server.port,
                                 smtp_security="none", smtp_username=SMTP_USER, smtp_password="nope",
                                 sms_provider="mock", push_provider="mock"))  # fmt: skip
    assert "535" in str((await wrong.check(within=5))["email"])
    port = free_port()
    down = factory_for(Settings(email_provider="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                                sms_provider="mock", push_provider="mock"))  # fmt: skip
    assert f"127.0.0.1:{port}" in str((await down.check(within=5))["email"])
