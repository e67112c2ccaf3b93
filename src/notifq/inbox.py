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

Connects are checked in batches too (`Admissions`): the sockets that AUTH in the same loop
turn (or while the previous batch's lookups run) share one query (does the subscriber exist,
has it anything un-ACKed in PostgreSQL?) and one Redis pipeline (their replay buffers). A
subscriber with nothing un-ACKed in PostgreSQL (every reconnect after a quiet spell) gets its
buffered frames and no PostgreSQL page at all. Measured with 10,000 clients connecting at
once (`make bench --only inapp`, 2026-12-01, with fanout.py's batched SUBSCRIBE): ~2.3 ms of
the API's CPU per connection (402 AUTHs/s) before, ~1.2 ms (784/s) after; a bare Starlette
endpoint that checks nothing takes ~0.6 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import inbox_repo, subscribers_repo
from notifq.db.inbox_repo import InboxItem
from notifq.db.messages_repo import MAX_ID
from notifq.errors import NotFound
from notifq.keys import RedisKeys
from notifq.providers.inapp import notification_frame
from notifq.settings import Settings

log = logging.getLogger("notifq.inbox")
RECEIPT_FLUSH_SECONDS = 0.05
RECEIPT_BATCH = 2000
RECEIPT_BACKLOG = 200_000  # receipts kept while PostgreSQL is away; beyond, the oldest are dropped (replayed later)
REPLAY_PAGE = 500
# ACKed frames leave their subscribers' replay buffers: one call for a whole batch (key, field pairs).
UNBUFFER_LUA = "for i = 1, #ARGV, 2 do redis.call('HDEL', ARGV[i], ARGV[i + 1]) end return 0"


def item_frame(item: InboxItem) -> bytes:
    """The same NOTIFICATION frame the workers publish, built from the row."""
    return notification_frame(item.id, item.category, item.subject, item.body, item.data, item.created_at)


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
        self._unbuffer = redis.register_script(UNBUFFER_LUA)

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
        try:  # ACKed frames leave the replay buffer
            args: list[str] = []
            for mid, sub, _ in rows:
                args += (self.keys.inbox_buffer(sub), str(mid))
            await self._unbuffer(args=args)
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


@dataclass(frozen=True)
class Admission:
    """What a connecting socket needs to know, looked up with the other sockets of its batch."""

    exists: bool
    unacked_in_postgres: bool  # False: the replay is the buffer alone
    buffered: dict[int, bytes] | None  # the replay buffer; None when Redis did not answer


NOT_ADMITTED = Admission(False, False, None)


class Admissions:
    """Connecting subscribers, looked up in batches: one query and one Redis pipeline for all of a batch.

    A batch is whoever asked in the same loop turn, or while the previous batch was being
    looked up: under a reconnect storm the batches grow, when idle each AUTH is its own.
    """

    def __init__(self, reads: AsyncEngine, redis: Redis, keys: RedisKeys) -> None:
        self.reads = reads
        self.redis = redis
        self.keys = keys
        self._waiting: dict[str, list[tuple[str, asyncio.Future[Admission]]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def check(self, subscriber_id: str, key: str) -> Admission:
        """`key`: the token's; a profile with another one (erased, then created again) is not this token's."""
        done: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(subscriber_id, []).append((key, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await done

    async def _run(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # the rest of this loop turn's AUTHs join the batch
                batch, self._waiting = self._waiting, {}
                try:
                    found = await self._lookup(list(batch))
                except Exception as exc:
                    for waiters in batch.values():
                        for _, w in waiters:
                            if not w.done():
                                w.set_exception(exc)
                    continue
                for sid, waiters in batch.items():
                    current_key, admission = found[sid]
                    for key, w in waiters:
                        if not w.done():
                            w.set_result(admission if key == current_key else NOT_ADMITTED)
        finally:
            self._runner = None

    async def _lookup(self, ids: list[str]) -> dict[str, tuple[str | None, Admission]]:
        """Per id: the profile's token key (None: no profile) and its admission."""
        async with self.reads.connect() as conn:
            rows = await inbox_repo.admit(conn, ids)
        buffers: list[dict[bytes, bytes]] | None = None
        present = [sid for sid in ids if sid in rows]
        if present:
            try:
                # `async with`: a pipeline cancelled mid-execute (its sockets closing) gives its connection back.
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid in present:
                        pipe.hgetall(self.keys.inbox_buffer(sid))
                    buffers = await pipe.execute()
            except Exception:
                log.warning("replay buffers unavailable; replaying from PostgreSQL", exc_info=True)
        out: dict[str, tuple[str | None, Admission]] = {sid: (None, NOT_ADMITTED) for sid in ids}
        for i, sid in enumerate(present):
            raw = buffers[i] if buffers is not None else None
            buffered = {int(k): v for k, v in raw.items()} if raw is not None else None
            key, unacked = rows[sid]
            out[sid] = (key, Admission(True, unacked, buffered))
        return out


class InboxService:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, redis: Redis, settings: Settings) -> None:
        self.engine = engine
        self.reads = reads
        self.redis = redis
        self.keys = RedisKeys.from_settings(settings)
        self.receipts = Receipts(engine, redis, self.keys)
        self.admissions = Admissions(reads, redis, self.keys)

    async def exists(self, subscriber_id: str, key: str | None = None) -> bool:
        """Whether the subscriber exists (and, given a token's `key`, is the profile the token was issued for)."""
        async with self.reads.connect() as conn:
            current = await subscribers_repo.token_key(conn, subscriber_id)
        return current is not None and (key is None or key == current)

    async def admit(self, subscriber_id: str, key: str) -> Admission:
        """Whether the subscriber exists (as the profile of the token's `key`), and what its replay needs
        (looked up with other connects)."""
        return await self.admissions.check(subscriber_id, key)

    async def replay(self, subscriber_id: str, send: Callable[[list[bytes]], Awaitable[None]],
                     admission: Admission | None = None) -> set[int]:  # fmt: skip
        """Send every un-ACKed notification, oldest first, page by page; returns their ids.

        The buffer's frames (un-ACKed, recent) are used as they are; PostgreSQL supplies the rest.
        Should Redis not answer, everything comes from PostgreSQL. An admission (looked up after the
        socket's channel was subscribed) saying PostgreSQL has nothing un-ACKed: the buffer alone.
        """
        buffered: dict[int, bytes] = {}
        if admission is not None and admission.buffered is not None:
            buffered = admission.buffered
        else:
            try:
                raw = await self.redis.hgetall(self.keys.inbox_buffer(subscriber_id))  # type: ignore[misc]
                buffered = {int(k): v for k, v in raw.items()}
            except Exception:
                log.warning("replay buffer unavailable; replaying from PostgreSQL", exc_info=True)
        if admission is not None and not admission.unacked_in_postgres:
            ordered = sorted(buffered)
            if ordered:
                await send([buffered[mid] for mid in ordered])
            return set(ordered)
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
