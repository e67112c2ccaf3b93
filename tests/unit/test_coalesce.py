"""The group commit's coalescer (notifq/coalesce.py), on its own."""

from __future__ import annotations

import asyncio
import contextvars

from notifq.coalesce import Coalescer

CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


async def test_a_flush_does_not_inherit_the_context_of_the_caller_that_started_it() -> None:
    """A flush serves many callers: it must not carry the first one's request context (e.g. its API key id)."""
    seen: list[str | None] = []

    async def flush(items: list[int]) -> list[int]:
        seen.append(CALLER.get())
        return [i * 2 for i in items]

    group: Coalescer[int, int] = Coalescer(flush, max_weight=10, linger=0.01)

    async def call(who: str, n: int) -> int:
        CALLER.set(who)
        return await group.submit(n)

    assert await asyncio.gather(call("key-a", 1), call("key-b", 2)) == [2, 4]
    await group.drain()
    assert seen and set(seen) == {None}
