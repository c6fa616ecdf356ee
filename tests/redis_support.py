"""The private-Redis helpers live with the real-Redis tier; tests import them from here."""

from streamcheck.properties.realredis._servers import (
    HOST,
    RedisClusterServers,
    RedisServer,
    answers_ping,
    find_free_port,
    have_redis_binaries,
    open_redis,
    resp_call,
)

__all__ = [
    "HOST",
    "RedisClusterServers",
    "RedisServer",
    "answers_ping",
    "find_free_port",
    "have_redis_binaries",
    "open_redis",
    "resp_call",
]
