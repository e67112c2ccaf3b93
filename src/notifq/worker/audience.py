"""Who a claimed message may go to: a subscriber's address, preferences, dedup and rate limit, decided at claim.

Decided when a worker claims the message, not when the API accepts it, so an opt-out or a
new address that arrives while a campaign waits in the queue is honoured. Everything here
is per chunk: the profiles came back with the claim (one statement), and the dedup and
per-subscriber rate checks for the whole chunk are one Lua script (one Redis round trip),
never a round trip per message.

A message to a plain address (no subscriber) passes untouched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from notifq.db.messages_repo import ClaimedMessage, ClaimedProfile, Outcome
from notifq.keys import RedisKeys
from notifq.settings import Settings
from notifq.vocabulary import Channel, Event, Lane, MessageStatus, SkipReason

# One call per chunk: for each message, take its dedup key (SET NX, or already ours: a retry)
# and then count it against its subscriber's window. 0 = send, 1 = duplicate, 2 = throttled.
# Keys are computed by the caller (keys.py) and passed as arguments, so one script serves
# any chunk; that ties it to one Redis node (not Redis Cluster), as every notifq key is.
SCREEN_LUA = """
local n = tonumber(ARGV[1])
local dedup_ms = ARGV[2]
local limit = tonumber(ARGV[3])
local window_ms = ARGV[4]
local out = {}
for i = 0, n - 1 do
    local dk, id, rk = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
    local verdict = 0
    if dk ~= '' then
        if not redis.call('SET', dk, id, 'NX', 'PX', dedup_ms) and redis.call('GET', dk) ~= id then
            verdict = 1
        end
    end
    if verdict == 0 and rk ~= '' then
        local count = redis.call('INCR', rk)
        if count == 1 then redis.call('PEXPIRE', rk, window_ms) end
        if count > limit then verdict = 2 end
    end
    out[i + 1] = verdict
end
return out
"""
VERDICTS = {1: SkipReason.DUPLICATE, 2: SkipReason.THROTTLED}


def address_of(channel: str, profile: ClaimedProfile, subscriber_id: str) -> str | None:
    """The profile's address for the channel; the newest push token (the last one given)."""
    if channel == Channel.EMAIL:
        return profile.email
    if channel == Channel.SMS:
        return profile.phone
    if channel == Channel.PUSH:
        return profile.push_tokens[-1] if profile.push_tokens else None
    return subscriber_id  # in-app: the inbox is the subscriber itself


def opted_out(preferences: Mapping[str, Any], channel: str, category: str | None, transactional: bool) -> bool:
    """A channel turned off applies to everything; a category turned off is ignored by transactional
    messages (an OTP or a security alert still arrives when "marketing" email is off)."""
    if (preferences.get("channels") or {}).get(channel) is False:
        return True
    if transactional or category is None:
        return False
    return ((preferences.get("categories") or {}).get(category) or {}).get(channel) is False


def template_vars(message: ClaimedMessage, profile: ClaimedProfile) -> dict[str, str] | None:
    """A subscriber campaign fills `{{ name }}` from the profile's `data` (strings, numbers turned into strings)."""
    if message.vars is not None or not profile.data:
        return message.vars
    return {str(k): str(v) for k, v in profile.data.items() if isinstance(v, (str, int, float))}


def skipped(message: ClaimedMessage, reason: SkipReason) -> Outcome:
    """Terminal, never sent; the claim's attempt is given back (attempts stays what it was)."""
    return Outcome(message.id, message.attempts, MessageStatus.SKIPPED, refund=True, event=Event.SKIPPED,
                   skip_reason=reason)  # fmt: skip


@dataclass(frozen=True)
class Screened:
    send: list[ClaimedMessage]  # subscribers' messages carry their resolved address as `recipient`
    skipped: list[Outcome]


async def screen(redis: Redis, keys: RedisKeys, settings: Settings, claimed: Sequence[ClaimedMessage]) -> Screened:
    send: list[ClaimedMessage] = []
    skips: list[Outcome] = []
    checks: list[tuple[ClaimedMessage, str, str]] = []  # (message, dedup key, rate key)
    limit, window = settings.subscriber_rate_limit
    window_no = int(time.time()) // window if limit else 0
    for message in claimed:
        if message.suppressed:
            skips.append(skipped(message, SkipReason.SUPPRESSED))
            continue
        sid = message.subscriber_id
        if sid is None:
            send.append(message)
            continue
        profile = message.profile
        address = address_of(message.channel, profile, sid) if profile is not None else None
        if profile is None or not address:
            skips.append(skipped(message, SkipReason.NO_ADDRESS))
            continue
        transactional = message.priority == Lane.TRANSACTIONAL
        if opted_out(profile.preferences, message.channel, message.category, transactional):
            skips.append(skipped(message, SkipReason.OPTED_OUT))
            continue
        ready = replace(message, recipient=address, vars=template_vars(message, profile))
        dedup = keys.dedup(sid, message.dedup_key) if message.dedup_key and settings.dedup_window > 0 else ""
        rate = keys.subscriber_rate(sid, message.channel, window_no) if limit and not transactional else ""
        if dedup or rate:
            checks.append((ready, dedup, rate))
        else:
            send.append(ready)
    if checks:
        args: list[str | int] = [len(checks), int(settings.dedup_window * 1000) or 1, limit, window * 1000]
        for message, dedup, rate in checks:
            args += [dedup, str(message.id), rate]
        verdicts = await redis.eval(SCREEN_LUA, 0, *args)  # type: ignore[arg-type, misc]
        for (message, _, _), verdict in zip(checks, verdicts, strict=True):
            if verdict:
                skips.append(skipped(message, VERDICTS[int(verdict)]))
            else:
                send.append(message)
        send.sort(key=lambda m: m.id)
    return Screened(send, skips)
