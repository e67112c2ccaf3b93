"""SNS's opted-out phone numbers, copied onto the suppression list (`opted_out_sms`) once per period.

SNS drops an SMS to a number that replied STOP, usually without an error to the Publish call,
so a provider answer cannot be relied on; `ListPhoneNumbersOptedOut` is the source. One worker
of the fleet copies it each NOTIFQ_SNS_OPT_OUT_SYNC_SECONDS (whoever takes the Redis lease),
in batches of 1,000 upserts; numbers already suppressed stay as they are, and `opted_out_sms`
entries SNS no longer lists (the number opted back in) are removed.
"""

from __future__ import annotations

import asyncio
import logging

from notifq.errors import ProviderConfigError
from notifq.feedback import Report
from notifq.providers.sns import SnsProvider
from notifq.vocabulary import Channel, FeedbackKind
from notifq.worker.deps import WorkerDeps

log = logging.getLogger("notifq.worker")
BATCH = 1000
RETRY_SECONDS = 60.0  # after a failed copy, the next worker tries again this soon


async def sync_opt_outs(deps: WorkerDeps) -> int:
    """Copy the list now; returns the entries written (new ones)."""
    provider = deps.providers.named("sns")
    if deps.feedback is None:
        return 0
    if not isinstance(provider, SnsProvider):  # its settings are wrong: said at start-up, and here
        raise ProviderConfigError(getattr(provider, "reason", "the SNS provider is not configured"))
    numbers = await provider.opted_out_numbers()
    written = 0
    for start in range(0, len(numbers), BATCH):
        reports = [Report(FeedbackKind.OPTED_OUT_SMS, Channel.SMS, n, detail="SNS ListPhoneNumbersOptedOut",
                          provider="sns") for n in numbers[start : start + BATCH]]  # fmt: skip
        written += (await deps.feedback.apply(reports)).suppressed
    lifted = await deps.feedback.lift_sms_opt_outs(numbers)
    log.info("SNS opt-outs copied: %d numbers, %d new on the suppression list, %d opted back in and removed",
             len(numbers), written, lifted)  # fmt: skip
    return written


async def run_opt_out_sync(deps: WorkerDeps) -> None:
    interval = deps.settings.sns_opt_out_sync_seconds
    if not interval or deps.settings.sms_provider != "sns":
        return
    lease = deps.keys.opt_out_sync()
    while not deps.draining.is_set():
        try:
            if await deps.redis.set(lease, deps.metrics.id, nx=True, px=int(interval * 1000)):
                try:
                    await sync_opt_outs(deps)
                except ProviderConfigError as exc:  # said at start-up too; tried again next period
                    log.warning("SNS's opted-out numbers not copied: %s", exc)
                except Exception:
                    log.warning("could not copy SNS's opted-out numbers; trying again soon", exc_info=True)
                    await deps.redis.pexpire(lease, int(RETRY_SECONDS * 1000))
        except Exception:
            log.warning("opt-out copy skipped this round (Redis)", exc_info=True)
        await asyncio.sleep(min(interval, RETRY_SECONDS))
