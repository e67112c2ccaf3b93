"""REDIS_URL's two forms (notifq.redis_connect): a plain URL as before, and `redis+sentinel://`."""

from __future__ import annotations

import copy
import time

import pytest
from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from notifq.errors import ConfigError
from notifq.redis_connect import (
    FAILOVER_TIMEOUT,
    FailoverRetry,
    MasterWatch,
    SentinelArqRedis,
    SentinelRedis,
    SentinelUrl,
    arq_connection,
    is_sentinel_url,
    parse_sentinel_url,
    redis_from_url,
)


@pytest.fixture(autouse=True)
def clean() -> None:
    """Parsing only: no PostgreSQL or Redis to empty (overrides conftest's autouse `clean`)."""


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://s1:26379,s2:26380,s3/mymaster/2",
         SentinelUrl((("s1", 26379), ("s2", 26380), ("s3", 26379)), "mymaster", 2)),
        ("redis+sentinel://:p%40ss@10.0.0.1,10.0.0.2/main",
         SentinelUrl((("10.0.0.1", 26379), ("10.0.0.2", 26379)), "main", 0, None, "p@ss")),
        ("REDIS+SENTINEL://app:pw@[::1]:26379,[fd00::2]/cache/0?sentinel_password=sp&failover_timeout=4.5",
         SentinelUrl((("::1", 26379), ("fd00::2", 26379)), "cache", 0, "app", "pw", None, "sp", 4.5)),
        ("redis+sentinel://h/m/?sentinel_username=u&sentinel_password=sp",
         SentinelUrl((("h", 26379),), "m", 0, None, None, "u", "sp", FAILOVER_TIMEOUT)),
    ],
)  # fmt: skip
def test_sentinel_urls_are_parsed(url: str, parsed: SentinelUrl) -> None:
    assert is_sentinel_url(url)
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+sentinel://s1:26379", "must name the master's service"),
        ("redis+sentinel://s1/m/0/extra", "must name the master's service"),
        ("redis+sentinel://s1/m/zero", "database number that is not"),
        ("redis+sentinel://s1:port/m", "the 1. in its list"),
        ("redis+sentinel://s1,,s2/m", "the 2. in its list"),
        ("redis+sentinel://s1:99999/m", "outside 1-65535"),
        ("redis+sentinel://:secret-pw@s1/m?sentinel_pasword=x", "unknown options sentinel_pasword"),
        ("redis+sentinel://:secret-pw@s1/m?failover_timeout=soon", "failover_timeout"),
        ("redis://h:6379/0", "does not start with redis+sentinel://"),
    ],
)
def test_a_bad_sentinel_url_is_refused_by_name(url: str, words: str) -> None:
    """The message names REDIS_URL and what is wrong, and shows the form; never the password."""
    with pytest.raises(ConfigError) as error:
        parse_sentinel_url(url)
    assert error.value.message.startswith("REDIS_URL ") and words in error.value.message
    assert "redis+sentinel://[:password@]host1:26379" in error.value.message
    assert "secret-pw" not in error.value.message


async def test_a_plain_url_gives_the_same_clients_as_before() -> None:
    """Not Sentinel: redis-py's Redis.from_url and arq's RedisSettings.from_dsn, untouched."""
    url = "redis://:pw@cache.internal:6380/3"
    assert not is_sentinel_url(url)
    client = redis_from_url(url, socket_connect_timeout=3)
    assert type(client) is Redis
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache.internal", 6380, 3, "pw")
    await client.aclose()
    assert arq_connection(url) == {"redis_settings": RedisSettings.from_dsn(url)}


async def test_a_sentinel_url_gives_master_clients_that_retry_connection_errors() -> None:
    """Nothing connects when the client is made; its pool asks the sentinels, and commands ride out a failover."""
    url = "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/4?failover_timeout=7"
    client = redis_from_url(url, socket_timeout=10)
    pool = client.connection_pool
    assert isinstance(client, SentinelRedis) and isinstance(pool, MasterWatch)
    kwargs = pool.connection_kwargs
    assert (pool.service_name, kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == ("mymaster", 4, "pw", 10)
    retry = kwargs["retry"]
    assert isinstance(retry, FailoverRetry) and retry._seconds == 7
    assert isinstance(copy.deepcopy(retry), FailoverRetry)  # redis-py copies it per connection
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [1, 2]
    await client.aclose()
    arq = arq_connection(url)
    assert set(arq) == {"redis_pool"} and isinstance(arq["redis_pool"], SentinelArqRedis)
    await arq["redis_pool"].aclose()


async def test_with_every_server_gone_a_command_fails_after_the_failover_timeout() -> None:
    """No sentinel answers: connection errors are retried for failover_timeout, then reach the caller."""
    client = redis_from_url("redis+sentinel://127.0.0.1:1/m?failover_timeout=0.6")
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await client.ping()
    assert 0.5 <= time.monotonic() - started < 5
    await client.aclose()


def test_a_password_with_an_unencoded_slash_is_not_quoted_back() -> None:
    """`/` splits the URL inside the password: the error must not show the pieces."""
    with pytest.raises(ConfigError) as refused:
        parse_sentinel_url("redis+sentinel://:s3cr/et@h1:26379/mymaster")
    assert "s3cr" not in str(refused.value) and "et@h1" not in str(refused.value)
    assert "percent-encode" in str(refused.value)
