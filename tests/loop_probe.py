"""A probe for "this await does not block the event loop": a task that counts 50 ms ticks meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

TICK_SECONDS = 0.05


@dataclass
class Ticks:
    count: int = 0


@contextlib.asynccontextmanager
async def loop_ticks() -> AsyncIterator[Ticks]:
    """Yields the tick count; a blocked loop leaves it near 0, a free one at about elapsed / 50 ms."""
    ticks = Ticks()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            ticks.count += 1

    task = asyncio.create_task(ticker())
    try:
        yield ticks
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
