"""Group commit: concurrent callers share one flush (one statement, one pipeline) and each gets its own answer.

Why not a timer or a fixed batch size alone: a flush starts as soon as a slot is free, so
an idle system adds at most `linger` to a lone call, and under load the groups grow by
themselves (whoever arrived while the previous flushes ran forms the next group).
`concurrency` > 1 writes a second group while the first waits on its round trip; for single
sends that measured worse (notifications.GROUPS_IN_FLIGHT): the extra slot kept groups tiny.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`await submit(item)` returns `flush(group)[i]` for the item's place i in its group.

    If a flush raises, every caller of that group gets the exception and no other group is
    touched. A caller cancelled while waiting does not cancel the flush its item is in (the
    others of its group still need it); it just stops waiting for the answer.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_weight: int,
        weight: Callable[[T], int] = lambda _: 1,
        linger: float = 0.0,
        concurrency: int = 1,
    ) -> None:
        if max_weight < 1 or concurrency < 1 or linger < 0:
            raise ValueError("max_weight and concurrency must be >= 1, linger >= 0")
        self._flush = flush
        self._weight = weight
        self.max_weight = max_weight
        self.linger = linger
        self.concurrency = concurrency
        self._waiting: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._waiting_weight = 0
        self._running: set[asyncio.Task[None]] = set()
        self.flushes = 0  # groups written: with `items`, the mean group size (tests and `make bench` read them)
        self.items = 0

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        self._waiting_weight += self._weight(item)
        self._start_flushes()
        return await done

    async def drain(self) -> None:
        """Wait until every submitted item is flushed (at shutdown, after new submits stopped)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _start_flushes(self) -> None:
        while self._waiting and len(self._running) < self.concurrency:
            # An empty context: a flush serves many callers, so it must not inherit the one that happened to start
            # it (its request's context variables, such as the API key id its log lines would carry).
            task = asyncio.create_task(self._flush_next(), context=contextvars.Context())
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start_flushes()

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest waiting items up to max_weight (always at least one: a heavy item goes alone)."""
        group: list[tuple[T, asyncio.Future[R]]] = []
        weight = 0
        while self._waiting:
            w = self._weight(self._waiting[0][0])
            if group and weight + w > self.max_weight:
                break
            group.append(self._waiting.popleft())
            weight += w
            self._waiting_weight -= w
        return group

    async def _flush_next(self) -> None:
        # Let this loop turn's other callers join; then, below the cap, wait `linger` for more.
        await asyncio.sleep(0)
        if self.linger and self._waiting_weight < self.max_weight:
            await asyncio.sleep(self.linger)
        group = self._take()
        if not group:
            return
        self.flushes += 1
        self.items += len(group)
        try:
            results = await self._flush([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"flush answered {len(results)} results for {len(group)} items")
        except BaseException as exc:
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            with contextlib.suppress(Exception):
                for _, done in group:  # mark retrieved: a caller that gave up must not log "never retrieved"
                    if done.done() and not done.cancelled():
                        done.exception()
            return
        for (_, done), result in zip(group, results, strict=True):
            if not done.done():
                done.set_result(result)
