"""Job stores: where a generation's status and metadata live (docs/design.md).

:class:`MemoryJobStore` serves a single process; :class:`RedisJobStore` is shared by
every replica. Both implement :class:`JobStore`.
"""

from streamcheck.impl.jobstore._memory import MemoryJobStore, MemoryJobStoreStats
from streamcheck.impl.jobstore._protocol import ContentSource, JobStore
from streamcheck.impl.jobstore._redis import RedisJobStore, RedisJobStoreStats

__all__ = [
    "ContentSource",
    "JobStore",
    "MemoryJobStore",
    "MemoryJobStoreStats",
    "RedisJobStore",
    "RedisJobStoreStats",
]
