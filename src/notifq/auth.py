"""Admin passwords (bcrypt), bearer tokens (JWT HS256, algorithm pinned), revocation and login throttling."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bcrypt
import jwt
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq.db import admins_repo
from notifq.errors import TooManyAttempts, Unauthorized, ValidationError
from notifq.keys import RedisKeys

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72
BCRYPT_ROUNDS = 12  # real hashes and the dummy one alike: login time must not tell which emails exist
REVOCATION_REFRESH_SECONDS = 2.0  # how long another API process may still accept a revoked token


@functools.cache
def dummy_hash() -> bytes:
    """A real hash of a random password, checked when the account does not exist.

    Same cost as a real one, so response times do not reveal which emails are admins.
    Made on first use rather than at import (0.25 s of bcrypt); the app makes it at start.
    """
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=BCRYPT_ROUNDS))


def check_password_length(password: str) -> bytes:
    raw = password.encode()
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ValidationError(
            f"password is longer than {BCRYPT_MAX_BYTES} bytes, which bcrypt cannot hash",
            {"field": "password", "maxBytes": BCRYPT_MAX_BYTES},
        )
    if not raw:
        raise ValidationError("password must not be empty", {"field": "password"})
    return raw


def hash_password(password: str) -> str:
    return bcrypt.hashpw(check_password_length(password), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()


def verify_password(password: str, password_hash: str | None) -> bool:
    raw = check_password_length(password)
    if password_hash is None:
        bcrypt.checkpw(raw, dummy_hash())
        return False
    return bcrypt.checkpw(raw, password_hash.encode())


# --- tokens ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whose it is, its id (for logout) and its admin's generation then."""

    admin_id: uuid.UUID
    jti: str
    generation: int
    exp: int  # seconds since the epoch


def issue_token(
    secret: str, issuer: str, subject: str, ttl_seconds: int, now: float | None = None, generation: int = 0
) -> IssuedToken:
    iat = int(now if now is not None else time.time())
    exp = iat + ttl_seconds
    claims = {"sub": subject, "iss": issuer, "iat": iat, "exp": exp, "jti": uuid.uuid4().hex, "gen": generation}
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return IssuedToken(token=token, expires_at=datetime.fromtimestamp(exp, tz=UTC))


def _decode(secret: str, issuer: str, token: str, required: tuple[str, ...], *, invalid: str,
            audience: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Signature, algorithm (pinned), issuer, expiry and the required claims; any defect is a 401."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=issuer, audience=audience,
            options={"require": ["exp", "iat", "sub", "iss", *required]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized(invalid) from None
    return claims


VERIFIED_CACHE_SIZE = 4096
_verified: dict[tuple[str, str, str], TokenClaims] = {}


def verify_token(secret: str, issuer: str, token: str) -> TokenClaims:
    """The token's claims; any defect (expired, tampered, alg=none, missing claim) is a 401.

    Only the signature and the claims: whether the token was revoked since is `AdminSessions.check`,
    on every request. A token that passed is remembered until its `exp`: a service sends
    thousands of requests with one token, and the HMAC check and claim parsing were ~40 µs of
    the ~250 µs a grouped single send costs the API (measured with cProfile, 2026-12-01).
    Nothing else about a verified token changes with time, and only exact strings that passed
    are remembered (the secret and issuer are part of the key), so the answer is the same.
    """
    cached = _verified.get((secret, issuer, token))
    if cached is not None and cached.exp > time.time():
        return cached
    claims = _verify(secret, issuer, token)
    if len(_verified) >= VERIFIED_CACHE_SIZE:
        _verified.clear()  # simpler than LRU; refilled at one decode per live token
    _verified[(secret, issuer, token)] = claims
    return claims


def _verify(secret: str, issuer: str, token: str) -> TokenClaims:
    claims = _decode(secret, issuer, token, ("jti", "gen"), invalid="invalid token")
    jti, generation = claims["jti"], claims["gen"]
    if not isinstance(jti, str) or not jti or type(generation) is not int:
        raise Unauthorized("invalid token")
    try:
        admin_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise Unauthorized("invalid token") from None
    return TokenClaims(admin_id, jti, generation, int(claims["exp"]))


SUBSCRIBER_AUDIENCE = "notifq:subscriber"


def issue_subscriber_token(secret: str, issuer: str, subscriber_id: str, ttl_seconds: int, key: str) -> IssuedToken:
    """A token for one subscriber's inbox (`/ws`, `/inbox`), handed to its user by the caller's backend.

    Its own audience: admin tokens carry none, and PyJWT refuses a token with an `aud` claim
    unless the audience is asked for, so neither kind of token passes for the other. `key` is
    the profile's token key (migration 0007): an erased profile's tokens never open a new one.
    """
    iat = int(time.time())
    claims = {"sub": subscriber_id, "iss": issuer, "aud": SUBSCRIBER_AUDIENCE, "iat": iat, "exp": iat + ttl_seconds,
              "key": key}  # fmt: skip
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return IssuedToken(token=token, expires_at=datetime.fromtimestamp(iat + ttl_seconds, tz=UTC))


@dataclass(frozen=True)
class SubscriberClaims:
    subscriber_id: str
    exp: int  # seconds since the epoch
    key: str  # the profile's token key when the token was issued


def verify_subscriber_token(secret: str, issuer: str, token: str) -> SubscriberClaims:
    """The claims of a valid subscriber token; anything else (an admin token too) is a 401."""
    claims = _decode(secret, issuer, token, ("aud", "key"), invalid="invalid subscriber token",
                     audience=SUBSCRIBER_AUDIENCE)  # fmt: skip
    subscriber_id, key = claims["sub"], claims["key"]
    if not isinstance(subscriber_id, str) or not subscriber_id or not isinstance(key, str):
        raise Unauthorized("invalid subscriber token")
    return SubscriberClaims(subscriber_id, int(claims["exp"]), key)


class AdminSessions:
    """Which signed tokens still count, per API process: revocation without a query per request.

    PostgreSQL is the truth (`admins.token_generation`, `revoked_tokens`); each process keeps
    a copy of every admin's generation and of the unexpired revoked token ids, loaded again
    by the first request after `REVOCATION_REFRESH_SECONDS` (one request in 2 s pays two
    small queries, the others a few dict lookups). A revoked token therefore lives at most
    that long on other API processes, and not at all on the process that handled its
    logout, which adds it to its own copy at once. An admin missing from the copy (created
    since the last load) is looked up by id once until the next load.

    Why not Redis, one key per revoked token, checked in the send's existing pipeline: every
    other endpoint would gain a Redis round trip, the check would have to be threaded into
    each service's pipeline, a deleted admin or a password change still needs PostgreSQL, and
    Redis may lose everything (a flushed Redis would resurrect logged-out tokens). Measured
    (2026-12-01, warm copy, 20,000 calls): `require_admin` 43 µs of CPU, of which the JWT
    is 41 µs and this check 2.5 µs (34 µs before jti/gen, so ~9 µs more in all, under 1 % of
    the ~1.06 ms a single send costs the API); a due load takes ~0.6 ms, once per 2 s.

    If PostgreSQL does not answer a due load, the request fails like any other (503): the
    copy is never trusted past its age.
    """

    def __init__(self, engine: AsyncEngine, refresh_seconds: float = REVOCATION_REFRESH_SECONDS) -> None:
        self.engine = engine
        self.refresh_seconds = refresh_seconds
        self._generations: dict[uuid.UUID, int | None] = {}  # None: looked up, no such admin
        self._revoked: set[str] = set()
        self._revoked_here: dict[str, int] = {}  # jti -> exp, for logouts this process handled
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()

    async def check(self, claims: TokenClaims) -> None:
        if time.monotonic() - self._loaded_at >= self.refresh_seconds:
            await self._load()
        try:
            generation = self._generations[claims.admin_id]
        except KeyError:
            generation = await self._lookup(claims.admin_id)
        if generation != claims.generation or claims.jti in self._revoked:
            raise Unauthorized("token revoked")

    async def revoke(self, claims: TokenClaims) -> None:
        """Logout: recorded in PostgreSQL for every process, refused by this one from now on."""
        async with self.engine.begin() as conn:
            expires_at = datetime.fromtimestamp(claims.exp, tz=UTC)
            await admins_repo.revoke(conn, claims.jti, claims.admin_id, expires_at)
        self._revoked_here[claims.jti] = claims.exp
        self._revoked.add(claims.jti)

    async def _load(self) -> None:
        async with self._lock:
            started = time.monotonic()
            if started - self._loaded_at < self.refresh_seconds:
                return  # another request loaded it while this one waited
            async with self.engine.connect() as conn:
                generations = await admins_repo.generations(conn)
                revoked = await admins_repo.revoked(conn)
            # A load that read revoked_tokens before a logout here committed must not drop it.
            now = time.time()
            self._revoked_here = {jti: exp for jti, exp in self._revoked_here.items() if exp > now}
            self._generations = dict(generations)
            self._revoked = revoked | self._revoked_here.keys()
            self._loaded_at = started

    async def _lookup(self, admin_id: uuid.UUID) -> int | None:
        async with self.engine.connect() as conn:
            generation = await admins_repo.generation(conn, admin_id)
        self._generations[admin_id] = generation
        return generation


# --- login throttling -----------------------------------------------------------------------------

# Each key is a hash: `failed` (wrong passwords in the window) and `pending` (attempts whose
# bcrypt check is running). An attempt may start only while failed + pending < max for every
# key, so parallel guesses cannot all pass a check made before any of them had failed.
_RESERVE = """
local max = tonumber(ARGV[1])
local busy = false
for _, key in ipairs(KEYS) do
  local failed = tonumber(redis.call("HGET", key, "failed") or "0")
  local pending = tonumber(redis.call("HGET", key, "pending") or "0")
  if failed >= max then
    return {"locked", redis.call("TTL", key)}
  end
  if failed + pending >= max then
    busy = true
  end
end
if busy then
  return {"busy", 0}
end
for _, key in ipairs(KEYS) do
  redis.call("HINCRBY", key, "pending", 1)
  redis.call("EXPIRE", key, ARGV[2], "NX")
end
return {"ok", 0}
"""
# The attempt's outcome (ARGV[1]): "failed" turns its pending slot into a failure and starts the
# window again; "succeeded" deletes the account's key (KEYS[1]) and frees the address's slot;
# "released" only frees the slots. A hash whose last field goes is deleted by Redis itself.
_SETTLE = """
for i, key in ipairs(KEYS) do
  if ARGV[1] == "succeeded" and i == 1 then
    redis.call("DEL", key)
  else
    if redis.call("HEXISTS", key, "pending") == 1 and redis.call("HINCRBY", key, "pending", -1) <= 0 then
      redis.call("HDEL", key, "pending")
    end
    if ARGV[1] == "failed" then
      redis.call("HINCRBY", key, "failed", 1)
      redis.call("EXPIRE", key, ARGV[2])
    end
  end
end
return 0
"""
RESERVE_WAIT_SECONDS = 5.0  # how long an attempt waits for others' bcrypt checks before a 429
RESERVE_POLL_SECONDS = 0.05


class LoginThrottle:
    """Counts failed logins per account and per client address in Redis (shared by every API process).

    Past `max_failures` in the window the answer is 429. Attempts in flight count against the
    limit until they end, so of N simultaneous wrong guesses at most `max_failures` reach
    bcrypt and the rest get 429; an attempt that finds the remaining slots taken by checks
    still running waits for them (right passwords in parallel all get in, a few at a time).
    """

    def __init__(self, redis: Redis, max_failures: int, lockout_seconds: int, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _keys(self, email: str, address: str) -> list[str]:
        digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
        return [self.keys.login_account(digest), self.keys.login_address(address)]

    async def reserve(self, email: str, address: str) -> None:
        """Take a slot for one attempt (then `failed`, `succeeded` or `release`); 429 when locked out."""
        keys = self._keys(email, address)
        deadline = time.monotonic() + RESERVE_WAIT_SECONDS
        while True:
            raw_state, ttl = await self._reserve(keys=keys, args=[self.max_failures, self.lockout_seconds])
            state = raw_state.decode() if isinstance(raw_state, bytes) else raw_state
            if state == "ok":
                return
            if state == "locked" or time.monotonic() >= deadline:
                raise TooManyAttempts("too many failed logins; try again later", max(int(ttl), 1))
            await asyncio.sleep(RESERVE_POLL_SECONDS)

    async def failed(self, email: str, address: str) -> None:
        """The attempt's password was wrong: one more failure, and the lockout window starts again."""
        await self._settle(keys=self._keys(email, address), args=["failed", self.lockout_seconds])

    async def succeeded(self, email: str, address: str) -> None:
        """The right password: the account's failures are forgotten, the address's are kept."""
        await self._settle(keys=self._keys(email, address), args=["succeeded", self.lockout_seconds])

    async def release(self, email: str, address: str) -> None:
        """The attempt got no answer (PostgreSQL down, say): it does not count."""
        await self._settle(keys=self._keys(email, address), args=["released", self.lockout_seconds])
