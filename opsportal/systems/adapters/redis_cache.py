"""Adapter for the Redis caches the portal operates on (redis-py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from opsportal.systems.adapters.errors import (
    AdapterError,
    AuthenticationFailed,
    OperationFailed,
    TimedOut,
    Unreachable,
)
from opsportal.systems.adapters.results import PingResult

if TYPE_CHECKING:
    from opsportal.systems.models import RedisCache


def translate_error(cache: RedisCache, exc: Exception) -> AdapterError:
    where = f"Redis {cache.name} at {cache.host}:{cache.port}/{cache.db}"
    if isinstance(exc, AdapterError):
        return exc
    text = str(exc)
    if (
        isinstance(exc, redis.AuthenticationError)
        or "WRONGPASS" in text
        or "NOAUTH" in text
        or "invalid password" in text.lower()
    ):
        return AuthenticationFailed(f"{where} rejected the credentials.")
    if isinstance(exc, redis.TimeoutError):
        return TimedOut(f"{where} did not answer within {cache.timeout_seconds:g} s.")
    if isinstance(exc, redis.ConnectionError):
        return Unreachable(f"{where} is not reachable: {text[:300] or 'connection failed'}")
    return OperationFailed(f"{where}: {text[:300]}")


@contextmanager
def connect(cache: RedisCache) -> Iterator[redis.Redis]:
    client = redis.Redis(
        host=cache.host,
        port=cache.port,
        db=cache.db,
        username=cache.username or None,
        password=cache.password or None,
        ssl=cache.use_tls,
        socket_timeout=cache.timeout_seconds,
        socket_connect_timeout=cache.timeout_seconds,
        client_name="opsportal",
        decode_responses=True,
        # An operator's check must answer within its timeout: no silent retries with backoff
        # (redis-py retries authentication failures too, since they subclass ConnectionError).
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    except redis.RedisError as exc:
        raise translate_error(cache, exc) from exc
    finally:
        client.close()


def ping(cache: RedisCache) -> PingResult:
    with connect(cache) as client:
        client.ping()
        info = client.info()
    hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
    hit_rate = hits / (hits + misses) if hits + misses else None
    return PingResult(
        summary=(
            f"Redis {info.get('redis_version')}: {info.get('used_memory_human')} used, "
            f"{info.get('connected_clients')} clients"
        ),
        details={
            "redis_version": info.get("redis_version"),
            "used_memory_bytes": info.get("used_memory"),
            "connected_clients": info.get("connected_clients"),
            "evicted_keys": info.get("evicted_keys"),
            "hit_rate": hit_rate,
        },
    )


# --- monitoring: INFO figures (appended for opsportal.monitoring) ----------------------------


@dataclass(frozen=True)
class CacheFigures:
    keyspace_hits: int
    keyspace_misses: int
    used_memory_bytes: int
    maxmemory_bytes: int  # 0: no limit configured
    evicted_keys: int
    connected_clients: int


def cache_figures(cache: RedisCache) -> CacheFigures:
    """The INFO figures behind the runbook's "Check Redis cache hit rates"."""
    with connect(cache) as client:
        info = client.info()
    return CacheFigures(
        keyspace_hits=int(info.get("keyspace_hits", 0)),
        keyspace_misses=int(info.get("keyspace_misses", 0)),
        used_memory_bytes=int(info.get("used_memory", 0)),
        maxmemory_bytes=int(info.get("maxmemory", 0)),
        evicted_keys=int(info.get("evicted_keys", 0)),
        connected_clients=int(info.get("connected_clients", 0)),
    )


# --- operations: cache statistics and clearing (appended for opsportal.operations) ---------


def cache_statistics(cache: RedisCache) -> dict:
    """Hit rate, memory, evictions, clients and this database's key count (from INFO)."""
    with connect(cache) as client:
        info = client.info()
        keys = client.dbsize()
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "used_memory_bytes": int(info.get("used_memory", 0)),
        "used_memory_human": info.get("used_memory_human"),
        "maxmemory_bytes": int(info.get("maxmemory", 0)),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "expired_keys": int(info.get("expired_keys", 0)),
        "connected_clients": int(info.get("connected_clients", 0)),
        "keys_in_database": keys,
        "database": cache.db,
    }


def cache_clear(cache: RedisCache, *, pattern: str = "", batch_size: int = 500) -> int:
    """Remove every key of the cache's logical database, or only those matching `pattern`
    (walked with SCAN and removed with UNLINK in batches, never KEYS, so Redis keeps
    answering everyone else meanwhile). Returns how many keys were removed."""
    with connect(cache) as client:
        if not pattern:
            count = client.dbsize()
            client.flushdb(asynchronous=True)
            return count
        removed = 0
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= batch_size:
                removed += client.unlink(*batch)
                batch = []
        if batch:
            removed += client.unlink(*batch)
    return removed


@dataclass(frozen=True)
class KeyCount:
    """How many keys match a pattern: `complete` is False when the count stopped at its
    time or key cap (then `matched` is a lower bound after walking `scanned` keys)."""

    matched: int
    scanned: int
    keys_in_database: int
    complete: bool
    examples: list[str]

    @property
    def estimate(self) -> int:
        """The matching keys of the whole database, extrapolated from those walked (SCAN
        walks the hash table, so the keys walked are a fair sample); exact when complete."""
        if self.complete or not self.scanned:
            return self.matched
        return round(self.matched * self.keys_in_database / self.scanned)


def cache_count_matching(
    cache: RedisCache,
    *,
    pattern: str = "",
    max_seconds: float = 1.5,
    max_scanned: int = 5_000_000,
    scan_count: int = 5_000,
) -> KeyCount:
    """Count the keys matching `pattern` with SCAN (never KEYS), bounded in time and in keys
    walked; an empty pattern is the whole database (DBSIZE, exact)."""
    with connect(cache) as client:
        total = client.dbsize()
        if not pattern:
            return KeyCount(total, total, total, True, [])
        deadline = time.monotonic() + max_seconds
        cursor, matched, scanned, examples = 0, 0, 0, []
        while True:
            cursor, keys = client.scan(cursor=cursor, match=pattern, count=scan_count)
            matched += len(keys)
            scanned += scan_count
            if len(examples) < 5:
                examples.extend(keys[: 5 - len(examples)])
            if cursor == 0:
                return KeyCount(matched, total, total, True, examples)
            if time.monotonic() > deadline or scanned >= max_scanned:
                return KeyCount(matched, min(scanned, total), total, False, examples)
