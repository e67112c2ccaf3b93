"""Which provider delivers a message: test recipients go to the mock, the rest to the channel's provider.

Mock routes win first, whatever the settings: `example.com` (NOTIFQ_MOCK_DOMAINS) email
addresses, `+1555…` (NOTIFQ_MOCK_PHONE_PREFIXES) numbers and `mock-…` push tokens. Real
providers are built lazily, so credentials are only needed once a real recipient shows up.
"""

from __future__ import annotations

from collections.abc import Callable

from notifq.providers.base import Provider
from notifq.providers.mock import MockProvider
from notifq.providers.ses import SesProvider
from notifq.settings import Settings


def _ses(s: Settings) -> Provider:
    return SesProvider(region=s.aws_region, from_email=s.from_email, endpoint_url=s.ses_endpoint_url,
                       timeout=s.provider_timeout)  # fmt: skip


BUILDERS: dict[str, Callable[[Settings], Provider]] = {"ses": _ses}


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
            provider = self._built[name] = BUILDERS[name](self.settings)
        return provider

    def for_recipient(self, recipient: str) -> Provider:
        """Email routing (kept for callers that only know an address)."""
        return self.for_message("email", recipient)

    async def aclose(self) -> None:
        await self.mock.aclose()
        for provider in self._built.values():
            await provider.aclose()
