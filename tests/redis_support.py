"""Redis helpers for tests: the private-server helpers of the real-Redis tier, and key
listings of a server (by SCAN, so they never block one that others share)."""

from __future__ import annotations

from streamcheck.properties.realredis._servers import (
    HOST,
    RedisClusterServers,
    RedisServer,
    answers_ping,
    find_free_port,
    have_redis_binaries,
    open_redis,
    open_redis_as,
    resp_call,
)

__all__ = [
    "HOST",
    "RedisClusterServers",
    "RedisServer",
    "answers_ping",
    "delete_keys",
    "find_free_port",
    "have_redis_binaries",
    "key_ttls",
    "open_redis",
    "open_redis_as",
    "resp_call",
    "scan_keys",
]

#: Keys one SCAN step looks at (a hint to the server, not a limit on the result).
_SCAN_COUNT = "1000"


def scan_keys(port: int, prefix: str = "") -> list[str]:
    """Every key of database 0 that starts with ``prefix``."""
    # Redis globs treat * ? [ ] and \ specially; escape them so the prefix is literal.
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    keys: list[str] = []
    cursor = "0"
    while True:
        reply = resp_call(port, "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
        assert isinstance(reply, list) and len(reply) == 2, reply
        after, batch = reply
        assert isinstance(after, str) and isinstance(batch, list), reply
        keys.extend(str(key) for key in batch)
        cursor = after
        if cursor == "0":
            return sorted(set(keys))


def key_ttls(port: int, prefix: str = "") -> dict[str, int]:
    """Each key starting with ``prefix`` with its TTL in seconds (-1: none)."""
    ttls: dict[str, int] = {}
    for key in scan_keys(port, prefix):
        ttl = resp_call(port, "TTL", key)
        assert isinstance(ttl, int), ttl
        if ttl != -2:  # expired between the SCAN and the TTL
            ttls[key] = ttl
    return ttls


def delete_keys(port: int, prefix: str) -> int:
    """Remove every key starting with ``prefix`` (never a FLUSH: others may share the
    server); returns how many there were."""
    if not prefix:
        raise ValueError("refusing to delete every key: give a prefix")
    removed = 0
    keys = scan_keys(port, prefix)
    for start in range(0, len(keys), 500):
        count = resp_call(port, "UNLINK", *keys[start : start + 500])
        assert isinstance(count, int), count
        removed += count
    return removed
