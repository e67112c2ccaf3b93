"""Every Redis key notifq writes, named in one place under one prefix (NOTIFQ_REDIS_PREFIX).

Deployments that share a Redis (even one database number) keep apart when their prefixes
differ: each reads and writes only keys under its own `<prefix>:`. The one exception is
arq's fixed namespaces (`arq:job:<id>`, `arq:in-progress:<id>`, `arq:retry:<id>`,
`arq:result:<id>`), which arq prefixes itself; so the job ids carry ours, `<prefix>:b<batch>`,
and two deployments never claim each other's `arq:job:…`.

The arq queues live under the prefix too (`<prefix>:queue`, `<prefix>:queue:transactional`)
unless NOTIFQ_QUEUE names another bulk queue.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from notifq.settings import Settings
from notifq.vocabulary import Lane

DEFAULT_QUEUE_NAME = "notifq:queue"  # NOTIFQ_QUEUE's default: the queue then follows the prefix


@dataclass(frozen=True)
class RedisKeys:
    prefix: str
    queue: str  # the bulk lane's arq queue; other lanes append `:<lane>`

    @classmethod
    def for_prefix(cls, prefix: str) -> RedisKeys:
        return cls(prefix, f"{prefix}:queue")

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisKeys:
        """NOTIFQ_QUEUE wins when it is set to something else than its default."""
        if settings.queue_name and settings.queue_name != DEFAULT_QUEUE_NAME:
            return cls(settings.redis_prefix, settings.queue_name)
        return cls.for_prefix(settings.redis_prefix)

    # --- delivery (queue.py) ---

    def lane_queue(self, lane: Lane) -> str:
        """Transactional sends have their own arq queue, which workers poll apart from bulk work."""
        return self.queue if lane == Lane.BULK else f"{self.queue}:{lane}"

    def job_id(self, batch: int) -> str:
        """The arq job id of a batch (`messages.job_id`); arq stores it as `arq:job:<this>`."""
        return f"{self.prefix}:b{batch}"

    @property
    def ready(self) -> str:
        """List of transactional batches due now (job numbers): workers pop many at once and claim them in
        one statement, instead of one arq job per single send (queue.py, worker/express.py)."""
        return f"{self.queue}:transactional:ready"

    @property
    def transactional_active(self) -> str:
        """A short-lived flag set by every transactional send: bulk work gives way while it lives."""
        return f"{self.prefix}:transactional:active"

    # --- telemetry (telemetry.py) ---

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> last heartbeat (epoch seconds)."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """Hash of a worker's latest heartbeat, expiring when it stops beating."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def metrics(self) -> str:
        """Hash of cluster-wide counters (field names in telemetry.py)."""
        return f"{self.prefix}:metrics"

    def sent_rate(self, second: int) -> str:
        """Messages sent in one epoch second, published with the workers' heartbeats."""
        return f"{self.prefix}:rate:sent:{second}"

    def history(self, worker_id: str) -> str:
        """Sorted set: a worker's rate samples (`<time> <rate>`, scored by time), its last hour."""
        return f"{self.prefix}:history:{worker_id}"

    @property
    def history_hosts(self) -> str:
        """Hash: worker id -> host, for every worker with a rate history."""
        return f"{self.prefix}:histories"

    def outcome_series(self, bucket: int) -> str:
        """Hash: messages sent / failed / retried cluster-wide in the 10 s starting at `bucket` (epoch seconds)."""
        return f"{self.prefix}:series:{bucket}"

    # --- crash recovery (worker/liveness.py) ---

    def worker_jobs(self, worker_id: str) -> str:
        """Set: the batches a worker's arq jobs are running (added as a job starts, removed as it ends), kept an hour
        after its last heartbeat: when the worker dies, its jobs' in-progress claims are deleted at once."""
        return f"{self.prefix}:worker-jobs:{worker_id}"

    @property
    def epoch(self) -> str:
        """String: a random value set once per Redis dataset. Gone means Redis lost its data (flushed, or
        restarted without persistence): the queue is refilled from PostgreSQL at once."""
        return f"{self.prefix}:epoch"

    # --- fleet-wide provider limits and failover (worker/fleet_limit.py, worker/delivery.py) ---

    def fleet_limit(self, provider: str) -> str:
        """Hash: one provider's fleet-wide rate (GCRA time, back-off, hold, sends per second), kept by one Lua
        script that every worker calls; the API reads it (telemetry.provider_limits)."""
        return f"{self.prefix}:fleet:{provider}"

    @property
    def failover(self) -> str:
        """Hash: `<worker id>|<channel>` -> the provider that worker fails over to (no field: its first one)."""
        return f"{self.prefix}:failover"

    # --- login throttling (auth.py) ---

    def login_account(self, digest: str) -> str:
        return f"{self.prefix}:login:acct:{digest}"

    def login_address(self, address: str) -> str:
        return f"{self.prefix}:login:addr:{address}"

    # --- subscribers and the in-app channel (worker/audience.py, providers/inapp.py, inbox.py) ---

    def inbox_live(self, subscriber_id: str) -> str:
        """Pub/sub channel of a subscriber's live frames: every API process holding a connection subscribes."""
        return f"{self.prefix}:inbox:live:{subscriber_id}"

    def inbox_buffer(self, subscriber_id: str) -> str:
        """Hash: message id -> frame, the un-ACKed recent in-app notifications (NOTIFQ_INAPP_BUFFER_TTL)."""
        return f"{self.prefix}:inbox:buf:{subscriber_id}"

    def inbox_erased(self, subscriber_id: str) -> str:
        """Set for a while by an erasure: in-app sends still in flight for that id write nothing."""
        return f"{self.prefix}:inbox:erased:{subscriber_id}"

    def dedup(self, subscriber_id: str, dedup_key: str) -> str:
        """Which message holds (subscriber, dedupKey) for NOTIFQ_DEDUP_WINDOW; hashed to bound the key's length."""
        digest = hashlib.sha256(f"{subscriber_id}\x00{dedup_key}".encode()).hexdigest()[:32]
        return f"{self.prefix}:dedup:{digest}"

    def subscriber_rate(self, subscriber_id: str, channel: str, window: int) -> str:
        """Bulk messages counted for one subscriber and channel in one fixed window (its number)."""
        return f"{self.prefix}:srate:{channel}:{window}:{subscriber_id}"

    def opt_out_sync(self) -> str:
        """Held by the worker that copies SNS's opted-out numbers this period: one worker of the fleet does it."""
        return f"{self.prefix}:sns-opt-out-sync"
