"""Job stores: where a generation's status and metadata live (docs/design.md).

:class:`MemoryJobStore` serves a single process; :class:`RedisJobStore` is shared by
every replica. Both implement :class:`JobStore`. :func:`decode_job` reads a job hash as
the Redis store writes it (for tools that audit a keyspace).
"""

from streamcheck.impl.jobstore._codec import decode_job
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
    "decode_job",
]
