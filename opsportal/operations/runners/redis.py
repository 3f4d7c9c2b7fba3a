"""Runners that act on a Redis cache."""

from __future__ import annotations

from opsportal.operations.runners.outcome import Outcome, _mib
from opsportal.systems.adapters import redis_cache


def run_cache_statistics(target, params, operation) -> Outcome:
    cache = target.specific()
    stats = redis_cache.cache_statistics(cache)
    rate = stats["hit_rate"]
    text = (
        f"{cache.name}: hit rate {'— (no lookups yet)' if rate is None else f'{rate:.1%}'} "
        f"({stats['keyspace_hits']} hits, {stats['keyspace_misses']} misses), memory "
        f"{stats['used_memory_human']}"
        + (f" of {_mib(stats['maxmemory_bytes'])}" if stats["maxmemory_bytes"] else " (no limit)")
        + f", {stats['evicted_keys']} evictions, {stats['connected_clients']} clients, "
        f"{stats['keys_in_database']} keys in db {stats['database']}."
    )
    return Outcome(text, stats)


def run_cache_clear(target, params, operation) -> Outcome:
    cache = target.specific()
    pattern = params.get("pattern", "")
    removed = redis_cache.cache_clear(cache, pattern=pattern)
    if pattern and not removed:
        text = f"No keys match {pattern!r} in db {cache.db} of {cache.name}; nothing was removed."
    elif pattern:
        text = f"Removed {removed} keys matching {pattern!r} from db {cache.db} of {cache.name}."
    else:
        text = f"Cleared db {cache.db} of {cache.name}: {removed} keys removed."
    return Outcome(text, {"removed": removed, "pattern": pattern})
