"""API keys: long-lived bearer credentials with scopes, for the services that call notifq.

A key is `nq_` and 43 URL-safe characters (32 random bytes), shown once when it is created and
stored only as its SHA-256 (migration 0010 says why a fast hash is right for it). It acts for the
admin who created it, limited to its scopes (vocabulary.Scope; `admin` implies the others).

`ApiKeys.check` authenticates a request the way `auth.AdminSessions` checks tokens: each API
process keeps a copy of the usable keys (hash → id, scopes, admin, expiry), loaded again by the
first request after `REVOCATION_REFRESH_SECONDS`, so a request costs a SHA-256 and a dict lookup,
no query (a lookup's timing can tell only about the SHA-256 of what the caller sent, which it cannot
steer towards a stored one). A revoked key is refused at once by the process that revoked it, and by the others
within that refresh. A key missing from the copy (created on another process since the last load,
or no key at all) makes the copy load again, at most every `MISS_RELOAD_SECONDS` whatever the
number of misses, so a flood of made-up keys costs PostgreSQL ≤ 5 small queries a second per
process, and a key created a moment ago elsewhere is found. A hash still missing from a copy
loaded after it was presented is remembered as refused (secrets are random: a made-up, revoked
or expired one never becomes valid), so a service retrying with a revoked key costs nothing.

Measured (2026-12-01, 2-core machine, warm copy, 20,000 calls of `requests.authenticate` with the
scope check): an API key costs 3.0 µs of CPU (the SHA-256, a dict lookup, the scope), an admin's
JWT 3.2-3.5 µs (its verification is cached, `auth.verify_token`), against ~1 ms for a single send.
A load of the copy, once per 2 s per process, takes 0.2 ms with 10 keys and 3.2 ms with 1,000
(`MAX_ACTIVE_KEYS`).

`lastUsedAt` is not written per request: each process notes a key's use at most once every
`LAST_USED_SECONDS` and writes the noted uses in one statement every `LAST_USED_FLUSH_SECONDS`
(and when it stops), so the first use shows within seconds and later ones lag up to a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.auth import REVOCATION_REFRESH_SECONDS
from notifq.db import api_keys_repo
from notifq.db.api_keys_repo import ApiKeyRow
from notifq.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from notifq.vocabulary import Scope

log = logging.getLogger("notifq.api_keys")
KEY_PREFIX = "nq_"  # a bearer token starting with it is an API key; JWTs start with `eyJ`
SECRET_BYTES = 32
SHOWN_CHARS = 6  # of the random part, kept in `prefix` for listings
_SHAPE = re.compile(r"nq_[A-Za-z0-9_-]{43}")  # what `new_secret` makes; anything else is refused unhashed
MAX_ACTIVE_KEYS = 1000
MAX_NAME = 200
MISS_RELOAD_SECONDS = 0.2
MAX_REFUSED = 10_000  # hashes remembered as refused; forgotten all at once past this
LAST_USED_SECONDS = 60.0
LAST_USED_FLUSH_SECONDS = 5.0


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def grants(scopes: frozenset[Scope], needed: Scope) -> bool:
    return Scope.ADMIN in scopes or needed in scopes


@dataclass(frozen=True)
class ActiveKey:
    """A usable key as a request sees it."""

    id: uuid.UUID
    scopes: frozenset[Scope]
    created_by: uuid.UUID  # the admin it acts for
    expires_at: datetime | None

    @classmethod
    def of(cls, key_id: uuid.UUID, scopes: Sequence[str], created_by: uuid.UUID, expires_at: datetime | None
           ) -> ActiveKey:  # fmt: skip
        return cls(key_id, frozenset(Scope(s) for s in scopes), created_by, expires_at)

    def allows(self, needed: Scope) -> bool:
        return grants(self.scopes, needed)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at.timestamp() <= now


class ApiKeys:
    """Creating, listing and revoking keys (PostgreSQL), and this process's copy of the usable ones."""

    def __init__(self, engine: AsyncEngine, reads: AsyncEngine, lookups: AsyncEngine,
                 refresh_seconds: float = REVOCATION_REFRESH_SECONDS,
                 flush_seconds: float = LAST_USED_FLUSH_SECONDS) -> None:  # fmt: skip
        self.engine = engine
        self.reads = reads
        self.lookups = lookups  # the send pool, as for AdminSessions: a slow dashboard read never delays a check
        self.refresh_seconds = refresh_seconds
        self.flush_seconds = flush_seconds
        self._keys: dict[bytes, ActiveKey] = {}
        self._refused: set[bytes] = set()  # hashes of no usable key (see the module's docstring)
        self._revoked_here: dict[uuid.UUID, float] = {}  # id -> when its revocation had committed (monotonic)
        self._loaded_at = -math.inf  # when the last load started (monotonic)
        self._lock = asyncio.Lock()
        self._noted: dict[uuid.UUID, float] = {}  # id -> when its last use was noted (monotonic)
        self._used: dict[uuid.UUID, datetime] = {}  # uses noted and not written yet
        self._task: asyncio.Task[None] | None = None

    # --- managing keys ------------------------------------------------------------------------------------

    async def create(self, name: str, scopes: Sequence[Scope], expires_at: datetime | None, *, admin_id: uuid.UUID,
                     by_key: ActiveKey | None = None) -> tuple[ApiKeyRow, str]:  # fmt: skip
        """The new key and its secret (the only time it exists outside the caller's hands).

        A key creating a key gives it none of the scopes it lacks, and no later expiry than its own
        (none given: its own), so a key cannot outlive or outrank itself through another.
        """
        if by_key is not None:
            for scope in scopes:
                if not by_key.allows(scope):
                    raise Forbidden(f"an API key cannot give the scope `{scope}`, which it does not have",
                                    {"scope": str(scope)})  # fmt: skip
            if by_key.expires_at is not None:
                if expires_at is None:
                    expires_at = by_key.expires_at
                elif expires_at > by_key.expires_at:
                    raise ValidationError("`expiresAt` is later than the expiry of the API key creating this one",
                                          {"field": "expiresAt", "max": by_key.expires_at.isoformat()})  # fmt: skip
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise ValidationError("`expiresAt` must be in the future", {"field": "expiresAt"})
        secret = new_secret()
        async with self.engine.begin() as conn:
            await api_keys_repo.lock(conn)
            if await api_keys_repo.count_active(conn) >= MAX_ACTIVE_KEYS:
                raise Conflict(f"there are {MAX_ACTIVE_KEYS} usable API keys already, the most allowed; revoke one",
                               {"max": MAX_ACTIVE_KEYS})  # fmt: skip
            row = await api_keys_repo.insert(
                conn, name=name, scopes=[str(s) for s in scopes], prefix=secret[: len(KEY_PREFIX) + SHOWN_CHARS],
                secret_hash=secret_hash(secret), created_by=admin_id, created_by_key=by_key.id if by_key else None,
                expires_at=expires_at,
            )  # fmt: skip
        if row is None:
            raise Unauthorized("the admin or API key making this request no longer exists or was revoked")
        self._keys[secret_hash(secret)] = ActiveKey.of(row.id, row.scopes, row.created_by, row.expires_at)
        return row, secret

    async def list_all(self) -> list[ApiKeyRow]:
        async with self.reads.connect() as conn:
            return await api_keys_repo.list_all(conn)

    async def get(self, key_id: uuid.UUID) -> ApiKeyRow:
        """A key that was not revoked (a revoked key is gone as a resource; `list_all` still shows it)."""
        async with self.reads.connect() as conn:
            row = await api_keys_repo.get(conn, key_id)
        if row is None:
            raise NotFound("no API key with that id")
        if row.revoked_at is not None:
            raise NotFound("that API key was revoked (GET /api-keys lists it, with revokedAt)")
        return row

    async def revoke(self, key_id: uuid.UUID) -> list[uuid.UUID]:
        """Revoke the key and the keys made from it: refused here from now on, elsewhere within the refresh.

        Returns the ids revoked now (empty when it already was).
        """
        async with self.engine.begin() as conn:
            await api_keys_repo.lock(conn)
            revoked = await api_keys_repo.revoke(conn, key_id)
        if revoked is None:
            raise NotFound("no API key with that id")
        committed = time.monotonic()
        for revoked_id in revoked:
            self._revoked_here[revoked_id] = committed
        self._refuse(h for h, k in self._keys.items() if k.id in self._revoked_here)
        self._keys = {h: k for h, k in self._keys.items() if k.id not in self._revoked_here}
        return revoked

    # --- authenticating requests -------------------------------------------------------------------------

    async def check(self, secret: str) -> ActiveKey:
        """The usable key whose secret this is; anything else is a 401."""
        if not _SHAPE.fullmatch(secret):
            raise Unauthorized("invalid API key")
        if time.monotonic() - self._loaded_at >= self.refresh_seconds:
            await self._load()
        digest = secret_hash(secret)
        key = self._keys.get(digest)
        if key is None:
            if digest not in self._refused:
                await self._load(after=time.monotonic())
                key = self._keys.get(digest)
            if key is None:
                self._refuse((digest,))
                raise Unauthorized("unknown, revoked or expired API key")
        if key.expired(time.time()):
            raise Unauthorized("API key expired")
        now = time.monotonic()
        if now - self._noted.get(key.id, -math.inf) >= LAST_USED_SECONDS:
            self._noted[key.id] = now
            self._used[key.id] = datetime.now(UTC)
        return key

    def _refuse(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            if len(self._refused) >= MAX_REFUSED:
                self._refused.clear()
            self._refused.add(digest)

    async def _load(self, after: float | None = None) -> None:
        """Load the copy: when it is older than the refresh, or (`after`: a miss then) by a load begun since."""
        if after is not None:
            wait = self._loaded_at + MISS_RELOAD_SECONDS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # outside the lock: the misses of the moment share the next load
        async with self._lock:
            started = time.monotonic()
            if after is None and started - self._loaded_at < self.refresh_seconds:
                return  # another request loaded it while this one waited
            if after is not None and self._loaded_at >= after:
                return
            async with self.lookups.connect() as conn:
                rows = await api_keys_repo.active(conn)
            # A revocation here that committed after this load read must not come back with it.
            self._keys = {r.secret_hash: ActiveKey.of(r.id, r.scopes, r.created_by, r.expires_at)
                          for r in rows if r.id not in self._revoked_here}  # fmt: skip
            self._revoked_here = {i: at for i, at in self._revoked_here.items() if at >= started}
            live = {k.id for k in self._keys.values()}
            self._noted = {i: at for i, at in self._noted.items() if i in live}
            self._loaded_at = started

    # --- last use ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifq-api-key-use")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # PostgreSQL away: the uses are kept for the next round
                log.warning("API keys' last use not recorded: %s: %s", type(exc).__name__, exc)

    async def flush(self) -> None:
        """Write the uses noted since the last flush (one statement)."""
        used, self._used = self._used, {}
        if not used:
            return
        try:
            async with self.engine.begin() as conn:
                await api_keys_repo.record_use(conn, used)
        except BaseException:
            for key_id, at in used.items():
                self._used[key_id] = max(at, self._used.get(key_id, at))
            raise

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)
