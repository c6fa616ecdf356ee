"""Backends for the contract suite: the same scenarios over memory, Redis and Cluster.

A Redis kind may name its client after a dash: ``redis-glide`` and ``cluster-glide`` run on
valkey-glide, ``redis`` and ``cluster`` on the default client (coredis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from streamcheck.impl import (
    GenerationJobManager,
    Keys,
    MemoryBackend,
    ReplicaParts,
    ReplicaSettings,
    open_replica,
)
from streamcheck.impl.redis import glide_available, redis_client_name
from streamcheck.model import Chunk, JSONValue, StreamEvent

#: Marks for a parameter that runs on valkey-glide: skipped where it is not installed.
NEEDS_GLIDE = pytest.mark.skipif(
    not glide_available(), reason="valkey-glide is not installed (the glide extra)"
)

#: Short timings so repair paths run in test time; the defaults are LibreChat's.
FAST = ReplicaSettings(
    reorder_timeout_s=0.1, idle_probe_s=0.3, producer_timeout_s=2.0, heartbeat_interval_s=0.5
)


@asynccontextmanager
async def replicas(
    kind: str,
    count: int = 2,
    *,
    url: str = "",
    prefix: str = "",
    settings: ReplicaSettings = FAST,
    parts: list[ReplicaParts] | None = None,
) -> AsyncIterator[list[GenerationJobManager]]:
    """``count`` replicas sharing one backend; Redis replicas get their own clients.
    ``parts`` (one per replica) builds them from subclasses of impl's parts."""
    built = parts if parts is not None else [ReplicaParts()] * count
    async with AsyncExitStack() as stack:
        managers: list[GenerationJobManager] = []
        if kind == "memory":
            backend = MemoryBackend(settings=settings)
            for _ in range(count):
                managers.append(
                    await stack.enter_async_context(
                        open_replica(backend, settings=settings, parts=built[len(managers)])
                    )
                )
        else:
            from tests.redis_support import open_redis_as

            base, _, client = kind.partition("-")
            for _ in range(count):
                redis = await stack.enter_async_context(
                    open_redis_as(
                        url,
                        cluster=base == "cluster",
                        client=redis_client_name(client or "coredis"),
                    )
                )
                managers.append(
                    await stack.enter_async_context(
                        open_replica(
                            redis, settings=settings, keys=Keys(prefix), parts=built[len(managers)]
                        )
                    )
                )
        yield managers


async def collect(subscription: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    """Every event until the subscription ends (after its terminal), within 10 s."""
    events: list[StreamEvent] = []
    with trio.fail_after(10):
        async for event in subscription:
            events.append(event)
    return events


def delta(text: str, index: int = 0) -> JSONValue:
    return {
        "event": "on_message_delta",
        "data": {"index": index, "delta": {"content": [{"type": "text", "text": text}]}},
    }


def texts(events: list[StreamEvent]) -> list[str]:
    """The text of each chunk built by :func:`delta`, in order."""
    out: list[str] = []
    for event in events:
        if isinstance(event, Chunk):
            text = _dig(event.data, "data", "delta", "content", 0, "text")
            if isinstance(text, str):
                out.append(text)
    return out


def _dig(value: JSONValue, *path: str | int) -> JSONValue:
    for step in path:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value
