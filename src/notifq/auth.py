"""Admin passwords (bcrypt), bearer tokens (JWT HS256, algorithm pinned) and login throttling."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import bcrypt
import jwt
from redis.asyncio import Redis

from notifq.errors import TooManyAttempts, Unauthorized, ValidationError

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72
# A real hash of a random password: verifying against it when the account does not exist
# costs the same time as a real check, so response times do not reveal which emails exist.
_DUMMY_HASH = bcrypt.hashpw(uuid.uuid4().bytes, bcrypt.gensalt(rounds=10))


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
    return bcrypt.hashpw(check_password_length(password), bcrypt.gensalt(rounds=12)).decode()


def verify_password(password: str, password_hash: str | None) -> bool:
    raw = check_password_length(password)
    if password_hash is None:
        bcrypt.checkpw(raw, _DUMMY_HASH)
        return False
    return bcrypt.checkpw(raw, password_hash.encode())


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


def issue_token(secret: str, issuer: str, subject: str, ttl_seconds: int, now: float | None = None) -> IssuedToken:
    iat = int(now if now is not None else time.time())
    exp = iat + ttl_seconds
    token = jwt.encode({"sub": subject, "iss": issuer, "iat": iat, "exp": exp}, secret, algorithm=ALGORITHM)
    return IssuedToken(token=token, expires_at=datetime.fromtimestamp(exp, tz=UTC))


def verify_token(secret: str, issuer: str, token: str) -> str:
    """Return the subject; any defect (expired, tampered, alg=none, missing claim) is a 401."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=issuer,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("invalid token") from None
    return str(claims["sub"])


class LoginThrottle:
    """Counts failed logins per account and per client address in Redis (shared by every API process)."""

    def __init__(self, redis: Redis, max_failures: int, lockout_seconds: int) -> None:
        self.redis = redis
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds

    @staticmethod
    def _keys(email: str, address: str) -> list[str]:
        digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
        return [f"notifq:login:acct:{digest}", f"notifq:login:addr:{address}"]

    async def check(self, email: str, address: str) -> None:
        keys = self._keys(email, address)
        values = await self.redis.mget(keys)
        for key, value in zip(keys, values, strict=True):
            if value is not None and int(value) >= self.max_failures:
                ttl = await self.redis.ttl(key)
                raise TooManyAttempts("too many failed logins; try again later", max(int(ttl), 1))

    async def failed(self, email: str, address: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in self._keys(email, address):
            pipe.incr(key)
            pipe.expire(key, self.lockout_seconds)
        await pipe.execute()

    async def succeeded(self, email: str, address: str) -> None:
        await self.redis.delete(self._keys(email, address)[0])
