"""Redis connections from REDIS_URL: one server, or the master a group of Sentinels names.

Two forms of URL, one variable:

    redis://[[user]:password@]host:6379/0            (also rediss://, unix://: redis-py's own forms)
    redis+sentinel://[[user]:password@]host1:26379[,host2:26379,…]/mymaster[/0][?options]

The Sentinel form lists the sentinels (port 26379 when left out), then the name they monitor
the master under, then the database number (0 when left out). The user and password are the
data nodes' (master and replicas); sentinels that need their own take `sentinel_password=`
(and `sentinel_username=`) in the query. `failover_timeout=` (seconds, default 15) is how long
a command keeps retrying while there is no master to reach.

Why the clients here rather than redis-py's and arq's own Sentinel support:
- redis-py has no URL form for Sentinel, and its `Sentinel` opens clients to the sentinels that
  closing the master's client leaves open (a ResourceWarning, an error in the tests): the
  clients made here close them with the master's.
- A Sentinel client sees a failover as connection errors: refused by the old master, no master
  while the sentinels elect one, or READONLY from the old master once demoted (redis-py turns
  that into a ConnectionError and asks the sentinels again). Without retries each one reaches
  the caller; here a command retries connection errors for `failover_timeout` seconds, asking
  the sentinels for the master before each try. Only connection errors: a timeout may mean
  the server ran the command.
- arq's `RedisSettings(sentinel=True)` makes its pool without retries, timeouts or a way to
  close the sentinels' clients, so `arq_connection` hands arq a pool made here instead
  (`Worker(redis_pool=…)`); a plain URL still goes through `RedisSettings.from_dsn`, as before.

Nothing connects when a client is made: the first command asks the sentinels.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError

from notifq.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
FAILOVER_TIMEOUT = 15.0  # seconds: sentinels' usual `down-after-milliseconds 5000` + election + promotion, with room
MASTER_CHECK_SECONDS = 1.0  # how often a pool in use asks the sentinels which server is the master
SENTINEL_SOCKET_TIMEOUT = 2.0  # sentinels answer at once; a dead one must not hold up the search for long
_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d{1,5}))?$")
_OPTIONS = {"sentinel_password", "sentinel_username", "failover_timeout"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class SentinelUrl:
    """A `redis+sentinel://` URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    failover_timeout: float = FAILOVER_TIMEOUT


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a `redis+sentinel://` URL; a malformed one raises ConfigError naming REDIS_URL (never its password)."""

    def bad(why: str) -> ConfigError:
        form = f"{SENTINEL_SCHEME}://[:password@]host1:26379,host2:26379/mymaster/0"
        # No part of the URL is quoted back: a password with an unencoded `/` or `@` splits it in odd places.
        return ConfigError(f"REDIS_URL {why} (form: {form}; percent-encode `/`, `@` and `:` in a password)")

    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise bad(f"does not start with {SENTINEL_SCHEME}://")
    # urlsplit would read `h1:26379,h2:26379` as one host with a bad port: split the netloc by hand.
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user) or None, (unquote(secret) or None) if colon else None
    sentinels = []
    for n, item in enumerate(hosts.split(","), 1):
        match = _HOST.match(item.strip())
        if not match:
            raise bad(f"names a sentinel (the {n}. in its list) that is not host[:port]")
        port = int(match["port"] or SENTINEL_PORT)
        if not 0 < port < 65536:
            raise bad(f"names a sentinel port {port} outside 1-65535")
        sentinels.append((match["v6"] or match["name"], port))
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise bad("must name the master's service, and optionally a database number, after the sentinels")
    if len(parts) == 2 and not parts[1].isdigit():
        raise bad("has a database number that is not a whole number")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if unknown := sorted(set(options) - _OPTIONS):
        raise bad(f"has unknown options {', '.join(unknown)} (known: {', '.join(sorted(_OPTIONS))})")
    try:
        timeout = float(options.get("failover_timeout", FAILOVER_TIMEOUT))
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout < float("inf"):
        raise bad("has a failover_timeout that is not a number of seconds >= 0")
    return SentinelUrl(
        sentinels=tuple(sentinels), service=parts[0], db=int(parts[1]) if len(parts) == 2 else 0,
        username=username, password=password, sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None, failover_timeout=timeout,
    )  # fmt: skip


class FailoverRetry(Retry):
    """Retries connection errors until `seconds` have passed since the first try, however many tries that takes.

    redis-py's `Retry` counts tries, and how many fit in a failover depends on how fast each fails
    (refused at once on a dead host's port, or a connect timeout on a dead host). Each connection
    gets its own copy (redis-py deep-copies it), and the deadline lives in the call."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        super().__init__(ExponentialBackoff(cap=0.5, base=0.025), -1, (ConnectionError,))
        self._seconds = seconds

    async def call_with_retry(self, do: Callable[[], Awaitable[_T]], fail: Callable[[RedisError], Any]) -> _T:
        deadline = time.monotonic() + self._seconds
        failures = 0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                failures += 1
                await fail(error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(self._backoff.compute(failures), left))


class MasterWatch(SentinelConnectionPool):
    """A pool that notices a new master by itself, not only when the old one refuses it.

    After `SENTINEL FAILOVER` the old master keeps answering, as a master, until the sentinels
    turn it into a replica, some 8 to 20 s later: writes made there meanwhile are lost when it
    resyncs. So while the pool is used it asks the sentinels for the master every
    MASTER_CHECK_SECONDS, in the background (a command never waits for a sentinel), and a
    connection to another address is reconnected before its next command."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._checked = time.monotonic()
        self._check: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # redis-py 5.3 deprecates its arguments
        now = time.monotonic()
        if now - self._checked >= MASTER_CHECK_SECONDS and (self._check is None or self._check.done()):
            self._checked = now
            self._check = asyncio.create_task(self._ask_sentinels(), name="notifq-sentinel-check")
        return await super().get_connection(*args, **kwargs)

    async def _ask_sentinels(self) -> None:
        with contextlib.suppress(RedisError, OSError):  # the next command's connect asks them again
            await self.get_master_address()  # type: ignore[no-untyped-call]  # a new address disconnects the idle connections

    async def ensure_connection(self, connection: Any) -> None:
        if connection.is_connected and self.master_address not in (None, (connection.host, connection.port)):
            await connection.disconnect()
        await super().ensure_connection(connection)

    async def stop(self) -> None:
        """Once the master's connections are closed: no more checks, and the clients to the sentinels closed."""
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)
            self._check = None
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


async def _closed(client: Redis, close_connection_pool: bool | None) -> None:
    if close_connection_pool or (close_connection_pool is None and client.auto_close_connection_pool):
        assert isinstance(client.connection_pool, MasterWatch)
        await client.connection_pool.stop()


class SentinelRedis(Redis):
    """The master's client, found through the sentinels; closing it closes its clients to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await _closed(self, close_connection_pool)


class SentinelArqRedis(ArqRedis):
    """arq's client (job helpers on top of redis-py's) to the master, found through the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await _closed(self, close_connection_pool)


def _master(url: SentinelUrl, redis_class: type[Redis], options: dict[str, Any]) -> Redis:
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
                                       "socket_timeout": SENTINEL_SOCKET_TIMEOUT}  # fmt: skip
    if url.sentinel_password:
        sentinel_kwargs |= {"username": url.sentinel_username, "password": url.sentinel_password}
    options = {"retry": FailoverRetry(url.failover_timeout), "retry_on_error": [ConnectionError], **options}
    sentinel = Sentinel(list(url.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(url.service, redis_class=redis_class, connection_pool_class=MasterWatch,
                                        db=url.db, username=url.username, password=url.password, **options)  # fmt: skip
    return client


def redis_from_url(url: str, **options: Any) -> Redis:
    """`Redis.from_url(url, **options)`, which also takes `redis+sentinel://` URLs."""
    if not is_sentinel_url(url):
        client: Redis = Redis.from_url(url, **options)
        return client
    return _master(parse_sentinel_url(url), SentinelRedis, options)


def arq_connection(url: str) -> dict[str, Any]:
    """arq `Worker` keywords for REDIS_URL: `Worker(..., **arq_connection(url))`, once per Worker (it closes its pool).

    A plain URL gives `redis_settings` (arq makes its pool, and waits for Redis at start as before);
    a Sentinel URL gives `redis_pool`, a client to the master that rides out a failover (see above)."""
    if not is_sentinel_url(url):
        return {"redis_settings": RedisSettings.from_dsn(url)}
    # arq's own pools: a 1 s connect timeout; commands wait for Redis as long as they take (no socket_timeout).
    return {"redis_pool": _master(parse_sentinel_url(url), SentinelArqRedis, {"socket_connect_timeout": 1})}
