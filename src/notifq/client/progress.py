"""Following a campaign to its end: polling, a progress line, and the exit code its final status means.

On a terminal one line is redrawn in place; anywhere else (a CI log, a pipe) plain lines
are printed at most once a second so a long campaign does not flood the log, and the final
state is always printed.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from notifq.client.api import ApiError, Unreachable
from notifq.client.tables import clean, timestamp
from notifq.vocabulary import FINISHED_CAMPAIGN_STATUSES, CampaignStatus, MessageStatus

TERMINAL_STATUSES = FINISHED_CAMPAIGN_STATUSES
# Statuses in which nothing moves until a time or an operator says so: said once, or the watch looks stuck.
WAITING_STATUSES = frozenset({CampaignStatus.SCHEDULED, CampaignStatus.PAUSED})
POLL_SECONDS = 0.5
PLAIN_EVERY_SECONDS = 1.0
# A restarting API or a short PostgreSQL/Redis outage should not end a long watch.
OUTAGE_TOLERANCE_SECONDS = 30.0
# Each poll's own limit, well under the tolerance: one hung request must not hold the watch past it.
WATCH_REQUEST_SECONDS = 10.0
# What a proxy or load balancer in front of a restarting API answers: an outage, not a refusal.
OUTAGE_STATUSES = frozenset({502, 503, 504})
MIN_BAR_WIDTH, MAX_BAR_WIDTH = 10, 30


@dataclass(frozen=True)
class Snapshot:
    status: str
    total: int
    sent: int
    failed: int
    cancelled: int
    skipped: int = 0  # subscribers' messages not sent on purpose (opted out, no address, duplicate, throttled)

    @classmethod
    def of(cls, campaign: Mapping[str, Any]) -> Snapshot:
        progress = campaign.get("progress") or {}
        return cls(
            status=str(campaign.get("status", "?")),
            total=int(campaign.get("totalMessages") or 0),
            sent=int(progress.get(MessageStatus.SENT, campaign.get("sentCount", 0)) or 0),
            failed=int(progress.get(MessageStatus.FAILED, campaign.get("failedCount", 0)) or 0),
            cancelled=int(progress.get(MessageStatus.CANCELLED, 0) or 0),
            skipped=int(progress.get(MessageStatus.SKIPPED, 0) or 0),
        )

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.cancelled + self.skipped

    @property
    def percent(self) -> int:
        """Rounded down, so 100% means every message really finished; within 0-100 whatever the API says."""
        return min(100, max(0, self.finished * 100 // self.total)) if self.total > 0 else 100

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def exit_code(snapshot: Snapshot) -> int:
    """0 only for a clean completion; failed messages or a cancellation are 1."""
    return 0 if snapshot.status == CampaignStatus.COMPLETED and snapshot.failed == 0 else 1


class RateMeter:
    """Messages per second over the last few seconds: a whole-run average would hide a stall or a speed-up."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, finished: int) -> None:
        if self.samples and finished < self.samples[-1][1]:
            # Fewer finished than before: failed messages were queued again (retry). A rate across that drop
            # would be negative; measure afresh from here.
            self.samples.clear()
        self.samples.append((at, finished))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return max(0.0, (n1 - n0) / (t1 - t0)) if t1 > t0 else None


def duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def bar(percent: int, width: int = 20) -> str:
    filled = width * percent // 100
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def describe(snapshot: Snapshot, rate: float | None, elapsed: float, width: int | None = None) -> str:
    """One progress line. Given a `width`, parts are dropped to fit it, least useful first (the total, the
    rate, the ETA, then the spacing), so that the status is never cut ("processin", "comp")."""
    head = [f"{snapshot.percent:3d}%", f"sent {snapshot.sent}", f"failed {snapshot.failed}"]
    if snapshot.cancelled:
        head.append(f"cancelled {snapshot.cancelled}")
    if snapshot.skipped:
        head.append(f"skipped {snapshot.skipped}")
    rate = max(0.0, rate) if rate is not None else None  # never a negative rate or ETA, whatever the caller gives
    speed = f"{rate:.0f} msg/s" if rate is not None else "- msg/s"
    if snapshot.terminal:
        timing = f"watched {duration(elapsed)}"
    else:
        remaining = max(0, snapshot.total - snapshot.finished)
        timing = f"ETA {duration(remaining / rate)}" if rate else "ETA -"
    status = clean(snapshot.status)  # from the API: escaped like every other value shown
    full = "  ".join([*head, f"of {snapshot.total}", speed, timing, status])
    if width is None or len(full) <= width:
        return full
    for line in ("  ".join([*head, speed, timing, status]), "  ".join([*head, timing, status]),
                 "  ".join([*head, status]), " ".join([*head, status]).lstrip()):  # fmt: skip
        if len(line) <= width:
            return line
    return f"{snapshot.percent}% {status}"[:width]  # narrower than the status itself: nothing else can help


def waiting_note(campaign: Mapping[str, Any]) -> str:
    """Why a watched campaign does not move, said once when it enters a waiting status."""
    hint = "Ctrl-C stops watching, not the campaign"
    if campaign.get("status") == CampaignStatus.SCHEDULED:
        when = f" for {timestamp(campaign['sendAt'])}" if campaign.get("sendAt") else ""
        return f"the campaign is scheduled{when}; waiting for it to start ({hint})"
    return f"the campaign is paused; waiting for it to be resumed ({hint})"


class ProgressView:
    def __init__(self, stream: TextIO, interactive: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.interactive = interactive
        self.clock = clock
        self.started = clock()
        self.meter = RateMeter()
        self.last_plain: float | None = None
        self.last_line = ""

    def update(self, snapshot: Snapshot) -> None:
        now = self.clock()
        self.meter.add(now, snapshot.finished)
        line = describe(snapshot, self.meter.rate(), now - self.started)
        if self.interactive:
            # A line wider than the terminal wraps, and \r would then redraw only its last part: the bar takes
            # what the text leaves (`[` + bar + `] `), and without room for a short bar the text is fitted.
            width = max(shutil.get_terminal_size().columns - 1, 1)
            bar_width = min(MAX_BAR_WIDTH, width - len(line) - 3)
            if bar_width >= MIN_BAR_WIDTH:
                shown = f"{bar(snapshot.percent, bar_width)} {line}"
            else:
                shown = describe(snapshot, self.meter.rate(), now - self.started, width)
            self.stream.write("\r" + shown + "\x1b[K")
            self.stream.flush()
        elif snapshot.terminal or self.last_plain is None or now - self.last_plain >= PLAIN_EVERY_SECONDS:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_plain = now
        self.last_line = line

    def note(self, text: str) -> None:
        """A line of its own, printed once; on a terminal it takes the progress line's place (redrawn below)."""
        if self.interactive:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r" + text[: max(width, 1)] + "\x1b[K\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the redrawn line, so whatever follows (a summary, a shell prompt, ^C) starts on its own."""
        if self.interactive and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


def watch(fetch: Callable[[], Mapping[str, Any]], view: ProgressView, first: Mapping[str, Any] | None = None,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
          ) -> Mapping[str, Any]:  # fmt: skip
    """Polls until a terminal status and returns the final campaign.

    No answer, or a 502/503/504, is an outage: tolerated for OUTAGE_TOLERANCE_SECONDS since the last good
    answer (so the time a hung request took counts too), then raised.
    """
    campaign = first if first is not None else fetch()
    answered_at = clock()
    announced: str | None = None  # the waiting status already explained
    try:
        while True:
            snapshot = Snapshot.of(campaign)
            if snapshot.status in WAITING_STATUSES and snapshot.status != announced:
                view.note(waiting_note(campaign))
            announced = snapshot.status if snapshot.status in WAITING_STATUSES else None
            view.update(snapshot)
            if snapshot.terminal:
                return campaign
            sleep(POLL_SECONDS)
            try:
                campaign = fetch()
                answered_at = clock()
            except (Unreachable, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in OUTAGE_STATUSES:
                    raise
                if clock() - answered_at > OUTAGE_TOLERANCE_SECONDS:
                    raise
    finally:
        view.close()
