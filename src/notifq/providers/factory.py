"""Which provider delivers a recipient: mock domains go to the mock, the rest to SES."""

from __future__ import annotations

from notifq.providers.base import Provider
from notifq.providers.mock import MockProvider
from notifq.providers.ses import SesProvider
from notifq.settings import Settings


class ProviderFactory:
    """Builds providers lazily (SES credentials are only needed once a real address shows up)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mock_domains = frozenset(d.lower() for d in settings.mock_domains)
        self.mock = MockProvider(settings.mock_latency_ms, settings.mock_failure_rate, settings.mock_seed)
        self._ses: SesProvider | None = None

    def for_recipient(self, recipient: str) -> Provider:
        domain = recipient.rpartition("@")[2].lower()
        if domain in self.mock_domains:
            return self.mock
        if self._ses is None:
            s = self.settings
            self._ses = SesProvider(region=s.aws_region, from_email=s.from_email, endpoint_url=s.ses_endpoint_url,
                                    timeout=s.provider_timeout)  # fmt: skip
        return self._ses

    async def aclose(self) -> None:
        await self.mock.aclose()
        if self._ses is not None:
            await self._ses.aclose()
