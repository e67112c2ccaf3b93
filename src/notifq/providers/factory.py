"""Which provider delivers a message: test recipients go to the mock, the rest to the channel's provider.

Mock routes win first, whatever the settings: `example.com` (NOTIFQ_MOCK_DOMAINS) email
addresses, `+1555…` (NOTIFQ_MOCK_PHONE_PREFIXES) numbers and `mock-…` push tokens. Real
providers are built lazily, so credentials are only needed once a real recipient shows up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from notifq.errors import ConfigError, TransientError
from notifq.providers.base import OutgoingMessage, Provider, SendResult
from notifq.providers.fcm import FcmProvider
from notifq.providers.mock import MockProvider
from notifq.providers.ses import SesProvider
from notifq.providers.smtp import SmtpProvider
from notifq.providers.sns import SnsProvider
from notifq.settings import Settings

log = logging.getLogger("notifq.providers")


def _ses(s: Settings) -> Provider:
    return SesProvider(region=s.aws_region, from_email=s.from_email, endpoint_url=s.ses_endpoint_url,
                       timeout=s.provider_timeout)  # fmt: skip


def _smtp(s: Settings) -> Provider:
    return SmtpProvider(host=s.smtp_host, port=s.smtp_port, from_email=s.from_email, security=s.smtp_security,
                        username=s.smtp_username, password=s.smtp_password, timeout=s.provider_timeout,
                        pool_size=s.smtp_pool_size)  # fmt: skip


def _sns(s: Settings) -> Provider:
    return SnsProvider(region=s.aws_region, endpoint_url=s.sns_endpoint_url, timeout=s.provider_timeout)


def _fcm(s: Settings) -> Provider:
    return FcmProvider(credentials_file=s.fcm_credentials_file, endpoint_url=s.fcm_endpoint_url,
                       timeout=s.provider_timeout)  # fmt: skip


BUILDERS: dict[str, Callable[[Settings], Provider]] = {"ses": _ses, "smtp": _smtp, "sns": _sns, "fcm": _fcm}


class Unconfigured:
    """Stands in for a provider whose settings are wrong: every send is transient (and trips the
    circuit breaker), so messages wait for the operator instead of failing for good."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    async def send(self, message: OutgoingMessage) -> SendResult:
        raise TransientError(f"provider {self.name} is not configured: {self.reason}")

    async def aclose(self) -> None:
        return None


class ProviderFactory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mock_domains = frozenset(d.lower() for d in settings.mock_domains)
        self.mock = MockProvider(settings.mock_latency_ms, settings.mock_failure_rate, settings.mock_seed)
        self._built: dict[str, Provider] = {}

    def is_mock_recipient(self, channel: str, recipient: str) -> bool:
        s = self.settings
        if channel == "sms":
            return recipient.startswith(s.mock_phone_prefixes)
        if channel == "push":
            return recipient.startswith(s.mock_push_prefix)
        return recipient.rpartition("@")[2].lower() in self.mock_domains

    def provider_name(self, channel: str) -> str:
        s = self.settings
        return {"email": s.email_provider, "sms": s.sms_provider, "push": s.push_provider}[channel]

    def for_message(self, channel: str, recipient: str) -> Provider:
        if self.is_mock_recipient(channel, recipient):
            return self.mock
        name = self.provider_name(channel)
        if name == "mock":
            return self.mock
        provider = self._built.get(name)
        if provider is None:
            try:
                provider = BUILDERS[name](self.settings)
            except ConfigError as exc:
                log.error("provider %s cannot be built: %s", name, exc.message)
                provider = Unconfigured(name, exc.message)
            self._built[name] = provider
        return provider

    def for_recipient(self, recipient: str) -> Provider:
        """Email routing (kept for callers that only know an address)."""
        return self.for_message("email", recipient)

    async def aclose(self) -> None:
        await self.mock.aclose()
        for provider in self._built.values():
            await provider.aclose()
