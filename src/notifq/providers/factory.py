"""Which provider delivers a message: test recipients go to the mock, the rest to the channel's provider.

Mock routes win first, whatever the settings: `example.com` (NOTIFQ_MOCK_DOMAINS) email
addresses, `+1555…` (NOTIFQ_MOCK_PHONE_PREFIXES) numbers and `mock-…` push tokens. Real
providers are built lazily, so credentials are only needed once a real recipient shows up;
the worker checks them at start (`ProviderFactory.check_all`) and only warns about what is wrong.
A channel may list several providers (NOTIFQ_EMAIL_PROVIDERS=ses,smtp): the first is the
channel's provider, the others its `backups`, which the worker's failover picks from.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from notifq.errors import ConfigError, ProviderConfigError
from notifq.keys import RedisKeys
from notifq.providers.base import CheckableProvider, OutgoingMessage, Provider, SendResult
from notifq.providers.fcm import FcmProvider
from notifq.providers.inapp import InAppProvider
from notifq.providers.mock import MockProvider
from notifq.providers.ses import SesProvider
from notifq.providers.smtp import SmtpProvider
from notifq.providers.sns import SnsProvider
from notifq.settings import Settings
from notifq.vocabulary import ADDRESSED_CHANNELS, Channel

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
    """Stands in for a provider whose settings are wrong (an FCM key file missing or unreadable): a send
    tries to build it again (the worker's circuit breaker lets one through per cool-down), so a file
    that appears is used without a restart; until then every send is a ProviderConfigError, so
    messages wait for the operator instead of failing for good."""

    def __init__(self, name: str, reason: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self.reason = reason
        self._build = build
        self.built: Provider | None = None

    def _provider(self) -> Provider:
        if self.built is None:
            try:
                self.built = self._build()
            except ConfigError as exc:
                self.reason = exc.message
                raise ProviderConfigError(f"provider {self.name} is not configured: {exc.message}") from None
            log.info("provider %s is configured now", self.name, extra={"provider": self.name})
        return self.built

    async def send(self, message: OutgoingMessage) -> SendResult:
        return await self._provider().send(message)

    async def check(self) -> None:
        provider = self._provider()
        if isinstance(provider, CheckableProvider):
            await provider.check()

    async def aclose(self) -> None:
        if self.built is not None:
            await self.built.aclose()


class ProviderFactory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mock_domains = frozenset(d.lower() for d in settings.mock_domains)
        self.mock = MockProvider(settings.mock_latency_ms, settings.mock_failure_rate, settings.mock_seed)
        self._built: dict[str, Provider] = {}
        self._inapp: InAppProvider | None = None
        # Each channel's providers in order (failover), read once: for_message asks per message.
        self.lists = {str(c): settings.providers_for(c) for c in ADDRESSED_CHANNELS}

    @property
    def inapp(self) -> InAppProvider:
        """In-app delivery (Redis fan-out), built on the first in-app message."""
        if self._inapp is None:
            if not self.settings.redis_url:
                raise ConfigError("the in-app channel needs REDIS_URL")
            self._inapp = InAppProvider(self.settings.redis_url, RedisKeys.from_settings(self.settings),
                                        self.settings.inapp_buffer_ttl)  # fmt: skip
        return self._inapp

    def is_mock_recipient(self, channel: str, recipient: str) -> bool:
        s = self.settings
        if channel == "sms":
            return recipient.startswith(s.mock_phone_prefixes)
        if channel == "push":
            return recipient.startswith(s.mock_push_prefix)
        return recipient.rpartition("@")[2].lower() in self.mock_domains

    def provider_name(self, channel: str) -> str:
        """The channel's first provider."""
        return "inapp" if channel == Channel.INAPP else self.lists[channel][0]

    def backups(self, channel: str, recipient: str, first: Provider) -> tuple[Provider, ...]:
        """The providers after `first` in its channel's list, in order; none when the channel has one, and
        for the mock's test recipients (they never leave the mock)."""
        names = self.lists.get(channel, ())
        if len(names) < 2 or first.name != names[0] or self.is_mock_recipient(channel, recipient):
            return ()
        return tuple(self.mock if name == "mock" else self.named(name) for name in names[1:])

    def for_message(self, channel: str, recipient: str) -> Provider:
        if channel == Channel.INAPP:
            return self.inapp
        if self.is_mock_recipient(channel, recipient):
            return self.mock
        name = self.provider_name(channel)
        if name == "mock":
            return self.mock
        return self.named(name)

    def named(self, name: str) -> Provider:
        """The real provider `name`, built on first use (a stand-in while its settings are wrong)."""
        provider = self._built.get(name)
        if isinstance(provider, Unconfigured) and provider.built is not None:
            provider = self._built[name] = provider.built  # configured since: use it directly
        if provider is None:
            build = functools.partial(BUILDERS[name], self.settings)
            try:
                provider = build()
            except ConfigError as exc:  # said by the worker's start-up check, and by each held send
                provider = Unconfigured(name, exc.message, build)
            self._built[name] = provider
        return provider

    def for_recipient(self, recipient: str) -> Provider:
        """Email routing (kept for callers that only know an address)."""
        return self.for_message("email", recipient)

    async def check(self, within: float) -> dict[str, str | None]:
        """Each channel's first provider's problem (None: none found), as check_all."""
        return {channel: problem for (channel, name), problem in (await self.check_all(within)).items()
                if name == self.provider_name(channel)}  # fmt: skip

    async def check_all(self, within: float) -> dict[tuple[str, str], str | None]:
        """Each configured real provider's problem (None: none found), per channel and provider (failover
        lists included), checked at once, each within `within` seconds.

        What a send would need, short of sending: AWS credentials and endpoint, the SMTP login, the
        FCM key (see each provider's `check`). Never raises."""
        pairs = [(c, name) for c, names in self.lists.items() for name in names if name != "mock"]

        async def check_one(name: str) -> str | None:
            try:
                provider = self.named(name)
                if isinstance(provider, CheckableProvider):
                    await asyncio.wait_for(provider.check(), within)
            except TimeoutError:
                return f"no answer within {within:g} s"
            except Exception as exc:
                return str(exc) or type(exc).__name__
            return None

        names = sorted({name for _, name in pairs})
        problems = dict(zip(names, await asyncio.gather(*(check_one(n) for n in names)), strict=True))
        return {(channel, name): problems[name] for channel, name in pairs}

    async def aclose(self) -> None:
        await self.mock.aclose()
        if self._inapp is not None:
            await self._inapp.aclose()
        for provider in self._built.values():
            await provider.aclose()
