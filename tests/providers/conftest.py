"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from notifq.providers.factory import ProviderFactory
from notifq.settings import Settings

MakeFactory = Callable[[Settings], ProviderFactory]


@pytest.fixture
async def factory_for() -> AsyncIterator[MakeFactory]:
    """Builds ProviderFactory objects and closes every one after the test."""
    made: list[ProviderFactory] = []

    def make(settings: Settings) -> ProviderFactory:
        made.append(ProviderFactory(settings))
        return made[-1]

    yield make
    for factory in made:
        await factory.aclose()
