"""The boundary every provider implements, and what it is given.

Adapters translate vendor errors into notifq's TransientError / ThrottledError /
PermanentError / ProviderConfigError at this edge, so the worker's retry policy never looks at
vendor codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message. `recipient` is an email address, an E.164 phone number, a
    device token or (in-app) a subscriber id, depending on `channel`; `data` is the push
    payload's key/value data (and the in-app frame's)."""

    message_id: int
    attempt: int
    recipient: str
    subject: str
    body: str
    channel: str = "email"
    data: dict[str, str] | None = None
    category: str | None = None  # in-app frames carry it; other channels ignore it
    created_at: datetime | None = None
    # Bulk email only: the one-click unsubscribe link (RFC 8058) sent as List-Unsubscribe(-Post).
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None = None


class Provider(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CheckableProvider(Provider, Protocol):
    """A provider that can check its configuration without sending (at worker start)."""

    async def check(self) -> None:
        """Raise ProviderConfigError (or another DeliveryError) saying what is wrong; send nothing."""
        ...
