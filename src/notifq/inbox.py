"""The in-app inbox service: replay on connect, the HTTP inbox, and receipts written in batches.

PostgreSQL holds the inbox (the messages on channel `inapp`); Redis holds a replay buffer of
recent un-ACKed frames per subscriber, written by the workers (providers/inapp.py). On
connect, the buffered frames are sent as they are and the rest (older ones, or everything
after Redis lost its data) come from PostgreSQL, oldest first.

ACK and READ frames are not written one by one: `Receipts` gathers them per API process and
writes them with one statement every RECEIPT_FLUSH_SECONDS (or RECEIPT_BATCH frames), the
seed's "delayed, batched persistence". A receipt still pending when a process dies is lost,
and the notification is replayed on the next connect: delivery to the client is
at-least-once, and clients drop repeats by `id` (docs/inapp.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import inbox_repo, subscribers_repo
from notifq.db.inbox_repo import InboxItem
from notifq.db.messages_repo import MAX_ID
from notifq.errors import NotFound
from notifq.keys import RedisKeys
from notifq.settings import Settings

log = logging.getLogger("notifq.inbox")
RECEIPT_FLUSH_SECONDS = 0.05
RECEIPT_BATCH = 2000
RECEIPT_BACKLOG = 200_000  # receipts kept while PostgreSQL is away; beyond, the oldest are dropped (replayed later)
REPLAY_PAGE = 500


def item_frame(item: InboxItem) -> bytes:
    """The same NOTIFICATION frame the workers publish (providers/inapp.py), built from the row."""
    return json.dumps(
        {"type": "NOTIFICATION", "id": str(item.id), "category": item.category, "subject": item.subject or None,
         "body": item.body, "data": item.data,
         "createdAt": item.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")},
        separators=(",", ":"), ensure_ascii=False,
    ).encode()  # fmt: skip


def frame_id(frame: bytes) -> int:
    """A NOTIFICATION frame's id without parsing the frame (both writers put `id` second)."""
    start = frame.index(b'"id":"') + 6
    return int(frame[start : frame.index(b'"', start)])


@dataclass(frozen=True)
class InboxPage:
    items: list[InboxItem]
    unread_count: int
    next_cursor: str | None


class Receipts:
    """ACK/READ receipts of one API process, written in batches by one background task."""

    def __init__(self, engine: AsyncEngine, redis: Redis, keys: RedisKeys) -> None:
        self.engine = engine
        self.redis = redis
        self.keys = keys
        self._pending: dict[int, tuple[str, bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def add(self, message_id: int, subscriber_id: str, read: bool) -> None:
        previous = self._pending.get(message_id)
        self._pending[message_id] = (subscriber_id, read or (previous is not None and previous[1]))
        if len(self._pending) >= RECEIPT_BATCH:
            self._wake.set()
        if len(self._pending) > RECEIPT_BACKLOG:
            self._pending.pop(next(iter(self._pending)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifq-receipts")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RECEIPT_FLUSH_SECONDS)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.warning("receipts not written yet (%d pending); retrying", len(self._pending), exc_info=True)
                await asyncio.sleep(1)

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        rows = [(mid, sub, read) for mid, (sub, read) in batch.items()]
        try:
            async with self.engine.connect() as conn:
                changed = await inbox_repo.record_receipts(conn, rows)
        except Exception:
            for mid, value in batch.items():  # back in line, behind nothing newer for the same id
                self._pending.setdefault(mid, value)
            raise
        self.written += changed
        try:  # ACKed frames leave the replay buffer
            pipe = self.redis.pipeline(transaction=False)
            for mid, sub, _ in rows:
                pipe.hdel(self.keys.inbox_buffer(sub), str(mid))
            await pipe.execute()
        except Exception:
            log.warning("ACKed frames stay in the replay buffer until it expires", exc_info=True)
        return changed

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()


class InboxService:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, redis: Redis, settings: Settings) -> None:
        self.engine = engine
        self.reads = reads
        self.redis = redis
        self.keys = RedisKeys.from_settings(settings)
        self.receipts = Receipts(engine, redis, self.keys)

    async def exists(self, subscriber_id: str) -> bool:
        async with self.reads.connect() as conn:
            return await subscribers_repo.exists(conn, subscriber_id)

    async def replay(self, subscriber_id: str, send: Callable[[list[bytes]], Awaitable[None]]) -> set[int]:
        """Send every un-ACKed notification, oldest first, page by page; returns their ids.

        The buffer's frames (un-ACKed, recent) are used as they are; PostgreSQL supplies the rest.
        Should Redis not answer, everything comes from PostgreSQL.
        """
        buffered: dict[int, bytes] = {}
        try:
            raw = await self.redis.hgetall(self.keys.inbox_buffer(subscriber_id))  # type: ignore[misc]
            buffered = {int(k): v for k, v in raw.items()}
        except Exception:
            log.warning("replay buffer unavailable; replaying from PostgreSQL", exc_info=True)
        skip = sorted(buffered)
        sent: set[int] = set()
        after = 0
        while True:
            async with self.reads.connect() as conn:
                rows = await inbox_repo.unacked(conn, subscriber_id, after_id=after, skip=skip, limit=REPLAY_PAGE)
            last = rows[-1].id if len(rows) == REPLAY_PAGE else MAX_ID
            # Buffered frames up to this page's last id go in id order with the page.
            merged = {r.id: item_frame(r) for r in rows}
            merged.update({mid: f for mid, f in buffered.items() if after < mid <= last})
            if merged:
                ordered = sorted(merged)
                await send([merged[mid] for mid in ordered])
                sent.update(ordered)
            if last == MAX_ID:
                return sent
            after = last

    async def page(self, subscriber_id: str, *, unread: bool | None, cursor: int | None, limit: int) -> InboxPage:
        async with self.reads.connect() as conn:
            rows = await inbox_repo.page(conn, subscriber_id, unread=unread, before_id=cursor, limit=limit + 1)
            count = await inbox_repo.unread_count(conn, subscriber_id)
        return InboxPage(rows[:limit], count, str(rows[limit - 1].id) if len(rows) > limit else None)

    async def mark_read(self, subscriber_id: str, message_id: int) -> InboxItem:
        """Right away (an HTTP caller expects to see it), through the same statement as READ frames."""
        async with self.engine.connect() as conn:
            await inbox_repo.record_receipts(conn, [(message_id, subscriber_id, True)])
            item = await inbox_repo.get_item(conn, subscriber_id, message_id)
        if item is None:
            raise NotFound(f"notification {message_id} is not in this inbox", {"id": str(message_id)})
        await self._unbuffer(subscriber_id, [message_id])
        return item

    async def read_all(self, subscriber_id: str) -> int:
        async with self.engine.connect() as conn:
            changed = await inbox_repo.read_all(conn, subscriber_id)
        with contextlib.suppress(Exception):
            await self.redis.delete(self.keys.inbox_buffer(subscriber_id))
        return changed

    async def _unbuffer(self, subscriber_id: str, ids: list[int]) -> None:
        with contextlib.suppress(Exception):
            await self.redis.hdel(self.keys.inbox_buffer(subscriber_id), *(str(i) for i in ids))  # type: ignore[misc]
