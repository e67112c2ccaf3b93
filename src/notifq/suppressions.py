"""The suppression list as operators see it: list, add by hand, remove.

Addresses are stored normalised (`addresses.suppression_key`), so `Ann@Example.COM` and
`Ann@example.com` are one entry, and a lookup with either finds it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.addresses import SUPPRESSIBLE_CHANNELS, describe, suppression_key
from notifq.db import suppressions_repo
from notifq.db.suppressions_repo import Suppression
from notifq.errors import NotFound, ValidationError
from notifq.vocabulary import Channel, SuppressionReason


def normalised(channel: str, address: str) -> str:
    """The stored form of an address, or a 422 naming what the channel takes."""
    if channel not in SUPPRESSIBLE_CHANNELS:
        raise ValidationError("channel must be email, sms or push", {"field": "channel"})
    key = suppression_key(channel, address)
    if key is None:
        raise ValidationError(f"address: {channel} takes {describe(channel)}", {"field": "address"})
    return key


MAX_ID = 2**63 - 1  # ids (and cursors) are PostgreSQL bigints; a larger cursor reads as the largest


class SuppressionService:
    def __init__(self, engine: AsyncEngine, reads: AsyncEngine) -> None:
        self.engine = engine
        self.reads = reads

    async def list_page(self, channel: Channel | None, reason: SuppressionReason | None, cursor: str | None,
                        limit: int) -> tuple[list[Suppression], str | None]:  # fmt: skip
        before = min(int(cursor), MAX_ID) if cursor else None
        async with self.reads.connect() as conn:
            rows = await suppressions_repo.list_page(conn, channel=channel, reason=reason, before=before,
                                                     limit=limit + 1)  # fmt: skip
        return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)

    async def add(self, channel: Channel, address: str, reason: SuppressionReason, detail: str | None
                  ) -> tuple[Suppression, bool]:  # fmt: skip
        """(the entry, True if new). An address already suppressed keeps its entry (an unsubscribe is
        strengthened to this reason, since it only stopped bulk messages)."""
        key = normalised(channel, address)
        async with self.engine.begin() as conn:
            written = await suppressions_repo.add(conn, [Suppression(channel, key, reason, detail=detail)])
            if written:
                return written[0]
            existing = [e for e in await suppressions_repo.get(conn, channel, key) if e.category is None]
        return existing[0], False

    async def remove(self, channel: str, address: str) -> int:
        """404 also for an address that is not one of the channel's: it cannot be on the list."""
        if channel not in SUPPRESSIBLE_CHANNELS:
            raise ValidationError("channel must be email, sms or push", {"field": "channel"})
        key = suppression_key(channel, address)
        if key is None:
            raise NotFound(f"the address is not on the {channel} suppression list", {"channel": channel})
        async with self.engine.begin() as conn:
            removed = await suppressions_repo.remove(conn, channel, key)
        if not removed:
            raise NotFound(f"the address is not on the {channel} suppression list", {"channel": channel})
        return removed
