"""Event transport: per-stream actors over a bus (memory or Redis)."""

from streamcheck.impl.transport._actor import (
    ACTOR_FAILED,
    MAX_BATCH_EVENTS,
    ActorStats,
    DeliveryTotals,
)
from streamcheck.impl.transport._bus import (
    Bus,
    EventKind,
    OutgoingEvent,
    Published,
    PublishOutcome,
    PublishRefused,
)
from streamcheck.impl.transport._envelope import (
    MAX_SEQ,
    AbortSignal,
    SequencedEvent,
    encode_abort,
    encode_body,
    encode_split,
)
from streamcheck.impl.transport._memory_bus import MemoryBus, MemoryHub
from streamcheck.impl.transport._redis_bus import RedisBus
from streamcheck.impl.transport._transport import EventTransport, Subscription

__all__ = [
    "ACTOR_FAILED",
    "MAX_BATCH_EVENTS",
    "MAX_SEQ",
    "AbortSignal",
    "ActorStats",
    "Bus",
    "DeliveryTotals",
    "EventKind",
    "EventTransport",
    "MemoryBus",
    "MemoryHub",
    "OutgoingEvent",
    "PublishOutcome",
    "PublishRefused",
    "Published",
    "RedisBus",
    "SequencedEvent",
    "Subscription",
    "encode_abort",
    "encode_body",
    "encode_split",
]
