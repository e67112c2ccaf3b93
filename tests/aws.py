"""AWS fixtures (a pytest plugin of tests/conftest.py): dummy credentials and moto's real HTTP server."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

# Variables that would change how boto3 resolves credentials, endpoints or retries.
_AWS_ISOLATE = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SESV2", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_REGION",
)  # fmt: skip


def unique_address(local: str = "sender") -> str:
    """An address on a fresh domain, so moto's (process-wide) identities never leak between tests."""
    return f"{local}@{uuid.uuid4().hex[:12]}.notifq.test"


@pytest.fixture(scope="session")
def aws_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials for the session (restored afterwards); ~/.aws is never consulted."""
    missing = Path(tmp_path_factory.mktemp("aws")) / "absent"
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_ISOLATE:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(missing))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
        yield


@pytest.fixture(scope="session")
def moto_server(aws_credentials: None) -> Iterator[str]:
    """moto's HTTP server on 127.0.0.1 and an OS-chosen free port; yields its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def moto_sent_messages(endpoint: str) -> list[dict[str, Any]]:
    """Every email moto's SES took, Simple and Raw alike (bulk email goes as Raw MIME, for its List-Unsubscribe
    headers), in Simple's shape: `id`, `source`, `destinations.ToAddresses`, `subject`, `body`; Raw ones also
    keep their parsed `mime`."""
    async with httpx.AsyncClient(base_url=endpoint) as http:
        r = await http.get("/moto-api/data.json")
        r.raise_for_status()
        ses = r.json().get("ses", {})
    sent = list(ses.get("Message", []))
    for raw in ses.get("RawMessage", []):
        mime = email.message_from_string(raw["raw_data"], policy=email.policy.default)
        assert isinstance(mime, EmailMessage)
        to = {"ToAddresses": [str(mime["To"])]}
        sent.append({"id": raw["id"], "source": raw["source"], "destinations": to, "subject": str(mime["Subject"]),
                     "body": str(mime.get_content()).strip(), "mime": mime})  # fmt: skip
    return sent


@pytest.fixture
def verified_sender(moto_server: str) -> Iterator[str]:
    """A sender address registered as an SESv2 email identity on moto."""
    sender = unique_address()
    client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto_server)
    try:
        client.create_email_identity(EmailIdentity=sender)
        yield sender
    finally:
        client.close()
