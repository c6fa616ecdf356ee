"""Event transport: per-stream actors over a bus (memory or Redis)."""

from streamcheck.impl.transport._actor import ActorStats, DeliveryTotals
from streamcheck.impl.transport._bus import (
    Bus,
    EventKind,
    Published,
    PublishOutcome,
    PublishRefused,
)
from streamcheck.impl.transport._envelope import AbortSignal, SequencedEvent, encode_split
from streamcheck.impl.transport._memory_bus import MemoryBus, MemoryHub
from streamcheck.impl.transport._redis_bus import RedisBus
from streamcheck.impl.transport._transport import EventTransport, Subscription

__all__ = [
    "AbortSignal",
    "ActorStats",
    "Bus",
    "DeliveryTotals",
    "EventKind",
    "EventTransport",
    "MemoryBus",
    "MemoryHub",
    "PublishOutcome",
    "PublishRefused",
    "Published",
    "RedisBus",
    "SequencedEvent",
    "Subscription",
    "encode_split",
]
