"""Event transport: per-stream actors over a bus (memory or Redis)."""

from impl.transport._bus import Bus, Dispatched, EventKind, Published, PublishRefused
from impl.transport._memory_bus import MemoryBus, MemoryHub
from impl.transport._redis_bus import RedisBus
from impl.transport._transport import EventTransport, Subscription

__all__ = [
    "Bus",
    "Dispatched",
    "EventKind",
    "EventTransport",
    "MemoryBus",
    "MemoryHub",
    "PublishRefused",
    "Published",
    "RedisBus",
    "Subscription",
]
