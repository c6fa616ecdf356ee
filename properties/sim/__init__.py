"""The deterministic simulation tier: a simulated Redis whose every command execution,
pub/sub delivery and replication is a step the test chooses (see :mod:`._redis`), each
recorded as a typed trace record (see :mod:`._trace`)."""

from streamcheck.properties.sim._engine import sim_time
from streamcheck.properties.sim._redis import (
    DEFAULT_POOL_SIZE,
    PendingItem,
    RedisCommandError,
    SimClient,
    SimRedis,
    SimRedisStatistics,
    SimSubscriber,
)
from streamcheck.properties.sim._trace import (
    CommandExecuted,
    ConnectionClosed,
    ConnectionOpened,
    FailedOver,
    LogRead,
    MessageDelivered,
    MessageDropped,
    Publication,
    PubSubRelayed,
    SubscribeAcknowledged,
    SubscribeExecuted,
    TraceRecord,
    TraceRecordError,
    UnsubscribeExecuted,
    WriteReplicated,
    record_from_json,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "CommandExecuted",
    "ConnectionClosed",
    "ConnectionOpened",
    "FailedOver",
    "LogRead",
    "MessageDelivered",
    "MessageDropped",
    "PendingItem",
    "PubSubRelayed",
    "Publication",
    "RedisCommandError",
    "SimClient",
    "SimRedis",
    "SimRedisStatistics",
    "SimSubscriber",
    "SubscribeAcknowledged",
    "SubscribeExecuted",
    "TraceRecord",
    "TraceRecordError",
    "UnsubscribeExecuted",
    "WriteReplicated",
    "record_from_json",
    "sim_time",
]
