"""Event transport: per-stream actors over a bus (memory or Redis)."""

from streamcheck.impl.transport._bus import Bus, EventKind, Published, PublishRefused
from streamcheck.impl.transport._memory_bus import MemoryBus, MemoryHub
from streamcheck.impl.transport._redis_bus import RedisBus
from streamcheck.impl.transport._transport import EventTransport, Subscription

__all__ = [
    "Bus",
    "EventKind",
    "EventTransport",
    "MemoryBus",
    "MemoryHub",
    "PublishRefused",
    "Published",
    "RedisBus",
    "Subscription",
]
