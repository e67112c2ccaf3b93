"""The deliverability loop: what providers and recipients say after a send changes what notifq sends next.

Reports come from three places — SES events through SNS (`POST /webhooks/ses`), a provider's
own answer to a send (an SMTP 5xx for the recipient, FCM's UNREGISTERED, SNS's opt-out list),
and one-click unsubscribe links — and all land the same way, in one transaction per batch:
the message is marked (bouncedAt, complainedAt, deliveredAt) and its audit trail says what
happened, the address goes on the suppression list, and the campaign's bounce and complaint
counts move. Then each moved campaign's guard decides: a hard-bounce or complaint rate over
its limit (after NOTIFQ_GUARD_MIN_SENT sends since the last resume) pauses the campaign, with
the reason shown, before the provider suspends the sender.

The pause runs after the counts commit, in its own transaction and off the path that
reported (after the webhook's answer is sent; the worker leaves it to the reconciler's next
round): a million-message pause rewrites a million rows, which neither an SNS delivery nor a
worker's job should wait on. The reconciler also judges, every round, each sending campaign
with bounces or complaints since its last resume, so a pause missed (a process died after the
commit) or not yet due (reports before the minimum sample) is decided there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifq.addresses import MAX_CATEGORIES, suppression_key
from notifq.campaigns import CampaignService
from notifq.db import feedback_repo, subscribers_repo, suppressions_repo
from notifq.db.engine import retry_deadlocks
from notifq.db.feedback_repo import GuardSample, MessageReport, PendingReport, UnsubscribeTarget
from notifq.db.suppressions_repo import Suppression
from notifq.errors import Conflict, NotFound
from notifq.ses_events import SesEvent
from notifq.settings import Settings
from notifq.vocabulary import (
    FEEDBACK_EVENTS,
    FEEDBACK_SUPPRESSES,
    CampaignStatus,
    Channel,
    Event,
    FeedbackKind,
    SuppressionReason,
)

log = logging.getLogger("notifq.feedback")

GUARDED = (CampaignStatus.PENDING, CampaignStatus.PROCESSING)
# Reports about a message (not only its address) that can wait for the message's SES id to be recorded.
MESSAGE_KINDS = frozenset({FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE, FeedbackKind.COMPLAINT,
                           FeedbackKind.DELIVERY})  # fmt: skip
PENDING_HOURS = 24
SES_SOURCE = "sns"  # provider_events.source of SNS MessageIds


@dataclass(frozen=True)
class Report:
    """One thing a provider said. The message is named by notifq's id or by the provider's; `address`
    (when the provider names one) is what gets suppressed, else the message's own recipient."""

    kind: FeedbackKind
    channel: Channel
    address: str | None = None
    message_id: int | None = None
    provider_message_id: str | None = None
    detail: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class Applied:
    duplicate: bool = False  # this event was applied before (a replay): nothing changed now
    matched: int = 0  # reports about a message notifq sent
    suppressed: int = 0  # suppression entries written
    # The campaigns whose counts moved: hand them to `guard` (the caller chooses when: pausing a large
    # campaign rewrites its unsent rows, which neither an SNS delivery nor a worker's job should wait on).
    samples: tuple[GuardSample, ...] = ()


def guard_reason(sample: GuardSample, settings: Settings) -> str | None:
    """Why this campaign must pause now, or None. Rates are of the messages attempted (sent, or failed: a
    recipient refused at RCPT TO is a failed message) since the last resume."""
    attempted = sample.attempted
    if sample.status not in GUARDED or attempted < settings.guard_min_sent:
        return None
    for what, count, limit, setting in (
        ("hard-bounce", sample.bounces, settings.max_bounce_rate, "NOTIFQ_MAX_BOUNCE_RATE"),
        ("complaint", sample.complaints, settings.max_complaint_rate, "NOTIFQ_MAX_COMPLAINT_RATE"),
    ):
        if count / attempted > limit:
            return (f"{what} rate {count / attempted:.2%} ({count} of {attempted} sent) is over {setting} "
                    f"({limit:.2%})")  # fmt: skip
    return None


def mask(address: str) -> str:
    """Enough of an address for its owner to recognise it on a page anyone holding the link can open."""
    local, at, domain = address.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return f"***{address[-4:]}" if len(address) > 4 else "***"


class FeedbackService:
    def __init__(self, engine: AsyncEngine, campaigns: CampaignService, settings: Settings) -> None:
        self.engine = engine
        self.campaigns = campaigns
        self.settings = settings

    async def apply(self, reports: Sequence[Report], *, event_id: tuple[str, str] | None = None) -> Applied:
        """Apply reports in one transaction; `event_id` (source, id) makes a replayed event a no-op."""

        async def work() -> tuple[Applied, list[GuardSample]]:
            async with self.engine.begin() as conn:
                if event_id is not None and await feedback_repo.seen(conn, *event_id):
                    return Applied(duplicate=True), []
                return await self._apply(conn, reports)

        applied, samples = await retry_deadlocks(work)
        return Applied(applied.duplicate, applied.matched, applied.suppressed, tuple(samples))

    async def _apply(self, conn: AsyncConnection, reports: Sequence[Report]) -> tuple[Applied, list[GuardSample]]:
        by_id = await feedback_repo.by_id(conn, [r.message_id for r in reports if r.message_id is not None])
        pmids = sorted({r.provider_message_id for r in reports if r.provider_message_id})
        by_pmid = await feedback_repo.by_provider_id(conn, pmids)
        merged: dict[int, tuple[set[FeedbackKind], list[tuple[str, str | None]], str | None]] = {}
        entries: list[Suppression] = []
        dead_tokens: list[tuple[str, str]] = []
        waiting: list[PendingReport] = []
        for r in reports:
            message = by_id.get(r.message_id) if r.message_id is not None else None
            message = message or (by_pmid.get(r.provider_message_id) if r.provider_message_id else None)
            if message is None and r.provider_message_id and r.kind in MESSAGE_KINDS:
                # SES may report before the worker has recorded the id it got: applied to the message later.
                waiting.append(PendingReport(r.provider_message_id, r.kind, r.detail))
            address = r.address or (message.recipient if message else None)
            channel = Channel(message.channel) if message is not None else r.channel
            if message is not None:
                kinds, events, _ = merged.setdefault(message.id, (set(), [], r.provider))
                kinds.add(r.kind)
                if (event := FEEDBACK_EVENTS[r.kind]) is not None:
                    events.append((event, r.detail))
                if r.kind == FeedbackKind.INVALID_TOKEN and message.subscriber_id:
                    dead_tokens.append((message.subscriber_id, message.recipient))
            reason = FEEDBACK_SUPPRESSES.get(r.kind)
            key = suppression_key(channel, address) if reason and address else None
            if reason and key:
                entries.append(Suppression(channel, key, reason, detail=r.detail,
                                           message_id=message.id if message else None,
                                           campaign_id=message.campaign_id if message else None))  # fmt: skip
        # Suppressions and tokens first, the messages and their campaigns last: the campaign row (which every
        # worker's statement for that campaign updates too) stays locked only until the commit right after.
        written = await suppressions_repo.add(conn, entries)
        await feedback_repo.forget_push_token(conn, dead_tokens)
        await feedback_repo.defer(conn, waiting)
        samples = await feedback_repo.apply(conn, [MessageReport(mid, frozenset(k), tuple(e), p)
                                                   for mid, (k, e, p) in merged.items()])  # fmt: skip
        return Applied(matched=len(merged), suppressed=len(written)), samples

    async def apply_pending(self) -> Applied:
        """Reports that came before their message's SES id was recorded, now that it is (the reconciler's
        round); those waiting longer than a day are about emails notifq never recorded, and are dropped."""

        async def work() -> tuple[Applied, list[GuardSample]]:
            async with self.engine.begin() as conn:
                await feedback_repo.drop_stale_pending(conn, PENDING_HOURS)
                matched = await feedback_repo.take_matched(conn)
                if not matched:
                    return Applied(), []
                reports = [Report(p.kind, Channel.EMAIL, message_id=mid, detail=p.detail,
                                  provider=feedback_repo.REPORTING_PROVIDER) for mid, p in matched]  # fmt: skip
                return await self._apply(conn, reports)

        applied, samples = await retry_deadlocks(work)
        return Applied(applied.duplicate, applied.matched, applied.suppressed, tuple(samples))

    async def ses_event(self, sns_message_id: str, event: SesEvent) -> Applied:
        """An SES event, applied once per SNS MessageId (SNS may deliver a message more than once)."""
        reports = [Report(r.kind, Channel.EMAIL, r.address, provider_message_id=event.ses_message_id,
                          detail=r.detail, provider="ses") for r in event.reports]  # fmt: skip
        return await self.apply(reports, event_id=(SES_SOURCE, sns_message_id))

    async def guard(self, samples: Sequence[GuardSample]) -> tuple[uuid.UUID, ...]:
        paused: list[uuid.UUID] = []
        for sample in samples:
            reason = guard_reason(sample, self.settings)
            if reason is None:
                continue
            try:
                await self.campaigns.pause(sample.id, reason)
            except (Conflict, NotFound):  # paused, cancelled or finished meanwhile: nothing left to guard
                continue
            except Exception:  # PostgreSQL away: the reconciler's next round decides again
                log.warning("the guard could not pause campaign %s now", sample.id, exc_info=True)
                continue
            log.warning("campaign paused by its guard: %s", reason, extra={"campaign_id": str(sample.id)})
            paused.append(sample.id)
        return tuple(paused)

    async def lift_sms_opt_outs(self, still_opted_out: Sequence[str]) -> int:
        """Numbers SNS no longer lists (they opted back in) leave the list; manual entries stay."""
        keep = [key for n in still_opted_out if (key := suppression_key(Channel.SMS, n))]
        async with self.engine.begin() as conn:
            return await suppressions_repo.lift(conn, Channel.SMS, SuppressionReason.OPTED_OUT_SMS, keep)

    # --- one-click unsubscribe ------------------------------------------------------------

    async def unsubscribe_target(self, message_id: int) -> UnsubscribeTarget:
        async with self.engine.connect() as conn:
            target = await feedback_repo.unsubscribe_target(conn, message_id, lock=False)
        if target is None:
            raise NotFound("this unsubscribe link is no longer valid", {})
        return target

    async def unsubscribe(self, message_id: int) -> str:
        """Stop what the link's message stands for; idempotent (a second use changes and counts nothing).
        Returns what was stopped, in words for the confirmation page."""

        async def work() -> str:
            async with self.engine.begin() as conn:
                target = await feedback_repo.unsubscribe_target(conn, message_id, lock=True)
                if target is None:
                    raise NotFound("this unsubscribe link is no longer valid", {})
                what = await self._stop(conn, target)
                if not target.done:
                    await feedback_repo.event(conn, target.message_id, Event.UNSUBSCRIBED, what)
                    if target.campaign_id is not None:
                        await feedback_repo.count_unsubscribe(conn, target.campaign_id)
                return what

        return await retry_deadlocks(work)

    async def _stop(self, conn: AsyncConnection, target: UnsubscribeTarget) -> str:
        """A subscriber with a category turns that category off in their preferences (it follows them to a
        new address, and their preference centre shows it); anyone else's address is suppressed for bulk
        messages of the category (of every category when the message had none)."""
        category, channel = target.category, target.channel
        what = f"{category} messages by {channel}" if category else f"bulk messages by {channel}"
        if target.subscriber_id and category:
            preferences = await feedback_repo.lock_preferences(conn, target.subscriber_id)
            if preferences is not None and self._opt_out(preferences, category, channel):
                await subscribers_repo.set_preferences(conn, target.subscriber_id, preferences)
                return what
        key = suppression_key(channel, target.recipient)
        if key is None:  # erased (GDPR): nothing left to reach
            return what
        await suppressions_repo.add(conn, [Suppression(Channel(channel), key, SuppressionReason.UNSUBSCRIBED,
                                                       category, "one-click unsubscribe", target.message_id,
                                                       target.campaign_id)])  # fmt: skip
        return what

    @staticmethod
    def _opt_out(preferences: dict[str, Any], category: str, channel: str) -> bool:
        """Turn `category` off for `channel` in place; False if the preferences hold no room for it."""
        categories = dict(preferences.get("categories") or {})
        if category not in categories and len(categories) >= MAX_CATEGORIES:
            return False
        categories[category] = {**(categories.get(category) or {}), channel: False}
        preferences["categories"] = categories
        return True
