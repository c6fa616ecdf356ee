"""streamcheck's reference implementation of resumable generation streams.

Start with :func:`open_replica` over a :class:`MemoryBackend` (one process) or a
:class:`~streamcheck.impl.redis.RedisLike` (many processes), then use the
:class:`GenerationJobManager` it yields.
"""

from streamcheck.impl._config import StreamConfig, redact_uri_list, redis_client_from_env
from streamcheck.impl._content import content_text
from streamcheck.impl._errors import (
    BackendUnavailable,
    EventTooLarge,
    IllegalTransition,
    StreamAccessDenied,
    StreamActorStopped,
    StreamcheckError,
)
from streamcheck.impl._ids import validate_stream_id
from streamcheck.impl._manager import (
    GenerationJob,
    GenerationJobManager,
    ManagerSettings,
    QueuedChunk,
    StopReason,
)
from streamcheck.impl._seams import CountingIds, IdSource, RandomIds, SystemWallClock, WallClock
from streamcheck.impl._service import (
    MemoryBackend,
    ReplicaParts,
    ReplicaSettings,
    open_configured_replica,
    open_replica,
    replica_settings,
)
from streamcheck.impl._types import (
    AbortOutcome,
    AbortResult,
    JobStatus,
    JobUpdate,
    ResumeState,
    SerializableJobData,
    UsageMetadata,
    UserMessage,
    read_usage,
)
from streamcheck.impl.redis import Keys, RedisLike
from streamcheck.impl.transport._transport import Subscription

__all__ = [
    "AbortOutcome",
    "AbortResult",
    "BackendUnavailable",
    "CountingIds",
    "EventTooLarge",
    "GenerationJob",
    "GenerationJobManager",
    "IdSource",
    "IllegalTransition",
    "JobStatus",
    "JobUpdate",
    "Keys",
    "ManagerSettings",
    "MemoryBackend",
    "QueuedChunk",
    "RandomIds",
    "RedisLike",
    "ReplicaParts",
    "ReplicaSettings",
    "ResumeState",
    "SerializableJobData",
    "StopReason",
    "StreamAccessDenied",
    "StreamActorStopped",
    "StreamConfig",
    "StreamcheckError",
    "Subscription",
    "SystemWallClock",
    "UsageMetadata",
    "UserMessage",
    "WallClock",
    "content_text",
    "open_configured_replica",
    "open_replica",
    "read_usage",
    "redact_uri_list",
    "redis_client_from_env",
    "replica_settings",
    "validate_stream_id",
]
