"""The Redis surface impl/ uses (a Protocol the simulation implements) and its real
adapters: coredis (the default) and valkey-glide (opt-in, the ``glide`` extra; imported only
when chosen)."""

from streamcheck.impl.redis._coredis import CoredisRedis, CoredisStatistics, open_coredis
from streamcheck.impl.redis._coredis_subscriber import CoredisSubscriber
from streamcheck.impl.redis._counters import SubscriberStatistics
from streamcheck.impl.redis._keys import Keys
from streamcheck.impl.redis._open import (
    DEFAULT_REDIS_CLIENT,
    REDIS_CLIENTS,
    GlideRunConflict,
    RedisClientName,
    glide_available,
    open_redis_client,
    redis_client_name,
)
from streamcheck.impl.redis._protocol import (
    LuaScript,
    PubSubEvent,
    PubSubMessage,
    RedisConnectionError,
    RedisLike,
    ScriptArg,
    Subscriber,
    SubscriptionsRestored,
)

__all__ = [
    "DEFAULT_REDIS_CLIENT",
    "REDIS_CLIENTS",
    "CoredisRedis",
    "CoredisStatistics",
    "CoredisSubscriber",
    "GlideRunConflict",
    "Keys",
    "LuaScript",
    "PubSubEvent",
    "PubSubMessage",
    "RedisClientName",
    "RedisConnectionError",
    "RedisLike",
    "ScriptArg",
    "Subscriber",
    "SubscriberStatistics",
    "SubscriptionsRestored",
    "glide_available",
    "open_coredis",
    "open_redis_client",
    "redis_client_name",
]
