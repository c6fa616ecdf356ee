"""The deterministic simulation tier: a simulated Redis whose every command execution,
pub/sub delivery and replication is a step the test chooses (see :mod:`._redis`)."""

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

__all__ = [
    "DEFAULT_POOL_SIZE",
    "PendingItem",
    "RedisCommandError",
    "SimClient",
    "SimRedis",
    "SimRedisStatistics",
    "SimSubscriber",
    "sim_time",
]
