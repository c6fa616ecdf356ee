"""The Redis surface impl/ uses (a Protocol the simulation implements) and its real
adapter over coredis."""

from streamcheck.impl.redis._coredis import CoredisRedis, CoredisStatistics, open_coredis
from streamcheck.impl.redis._coredis_subscriber import CoredisSubscriber, SubscriberStatistics
from streamcheck.impl.redis._keys import Keys
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
    "CoredisRedis",
    "CoredisStatistics",
    "CoredisSubscriber",
    "Keys",
    "LuaScript",
    "PubSubEvent",
    "PubSubMessage",
    "RedisConnectionError",
    "RedisLike",
    "ScriptArg",
    "Subscriber",
    "SubscriberStatistics",
    "SubscriptionsRestored",
    "open_coredis",
]
