"""Wiring one replica: a bus, a job store, the transport and the manager in a nursery.

``open_replica`` is the one place that knows which backend is in use; everything it
builds runs the same code over either. The embedded default is a :class:`MemoryBackend`,
which any number of replicas in one process can share (as they would share Redis).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import trio

from streamcheck.impl._config import StreamConfig
from streamcheck.impl._manager import GenerationJobManager, ManagerSettings
from streamcheck.impl._seams import IdSource, RandomIds, SystemWallClock, WallClock
from streamcheck.impl.jobstore._memory import MemoryJobStore
from streamcheck.impl.jobstore._redis import RedisJobStore
from streamcheck.impl.redis import Keys, RedisLike
from streamcheck.impl.transport._actor import ActorTimings, StreamActor
from streamcheck.impl.transport._bus import Bus
from streamcheck.impl.transport._memory_bus import JobFacts, MemoryBus, MemoryHub
from streamcheck.impl.transport._redis_bus import RedisBus
from streamcheck.impl.transport._transport import EventTransport


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """Every timing and limit of a replica; defaults are LibreChat's (docs/design.md)."""

    #: Reorder buffer: wait this long for a gap to fill before reading the log.
    reorder_timeout_s: float = 0.5
    #: Reorder buffer: or read the log as soon as this many messages are parked.
    reorder_capacity: int = 100
    #: A silent subscriber checks the log (and then the job) after this long.
    idle_probe_s: float = 2.0
    #: A running job whose producer has not been heard from for this long is lost.
    producer_timeout_s: float = 60.0
    running_ttl_s: int = 1200
    completed_ttl_s: int = 300
    stale_job_timeout_s: int = 1200
    cleanup_interval_s: float = 60.0
    heartbeat_interval_s: float = 10.0
    early_buffer_max_events: int = 5_000
    early_buffer_max_bytes: int = 8 * 1024 * 1024
    #: Largest encoded event accepted by emit (1 MiB); larger raises EventTooLarge.
    max_event_bytes: int = 1024 * 1024
    max_jobs: int = 1000
    #: Once the replica has started, ``gc.freeze()`` everything alive in the process
    #: (imports, clients, the replica itself): later collections no longer walk it, so
    #: a full collection stops the process for a few milliseconds instead of tens. It is
    #: process-wide and stays in force after the replica stops (frozen objects are still
    #: freed by reference counting, only cycles among them are never collected); a
    #: server hosting replicas turns it on, a library embedded in someone else's
    #: process leaves that choice to its host.
    freeze_heap_at_start: bool = False

    def actor_timings(self) -> ActorTimings:
        return ActorTimings(
            reorder_timeout=self.reorder_timeout_s,
            reorder_capacity=self.reorder_capacity,
            idle_probe=self.idle_probe_s,
            producer_timeout_ms=int(self.producer_timeout_s * 1000),
        )

    def manager_settings(self) -> ManagerSettings:
        return ManagerSettings(
            cleanup_interval_s=self.cleanup_interval_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
            early_buffer_max_events=self.early_buffer_max_events,
            early_buffer_max_bytes=self.early_buffer_max_bytes,
        )


@dataclass(frozen=True, slots=True)
class ReplicaParts:
    """The classes a replica is assembled from; each has one implementation here.

    They are named so that a test harness can build a replica from subclasses of them
    (for instance, to put a historical bug back and check that the harness finds it)
    without this package knowing of any alternative.
    """

    manager: type[GenerationJobManager] = GenerationJobManager
    transport: type[EventTransport] = EventTransport
    actor: type[StreamActor] = StreamActor
    redis_bus: type[RedisBus] = RedisBus


class MemoryBackend:
    """The embedded default: jobs, counters and logs in this process, shared by replicas."""

    def __init__(
        self, *, wall_clock: WallClock | None = None, settings: ReplicaSettings | None = None
    ) -> None:
        settings = settings if settings is not None else ReplicaSettings()
        self.wall_clock = wall_clock if wall_clock is not None else SystemWallClock()
        self.hub = MemoryHub()
        self.jobs = MemoryJobStore(
            wall_clock=self.wall_clock,
            max_jobs=settings.max_jobs,
            ttl_after_complete_ms=settings.completed_ttl_s * 1000,
            stale_job_timeout_ms=settings.stale_job_timeout_s * 1000,
            start_seq_for=self.hub.counter_now,
            on_forget=self.hub.forget,
        )
        self.hub.bind_jobs(self._facts)

    def _facts(self, stream_id: str) -> JobFacts | None:
        job = self.jobs.peek(stream_id)
        return JobFacts(job.generation_id, job.status) if job is not None else None


@asynccontextmanager
async def open_replica(
    backend: MemoryBackend | RedisLike,
    *,
    settings: ReplicaSettings | None = None,
    keys: Keys | None = None,
    wall_clock: WallClock | None = None,
    ids: IdSource | None = None,
    parts: ReplicaParts = ReplicaParts(),
) -> AsyncIterator[GenerationJobManager]:
    """Run one replica until the block exits (its tasks are cancelled then)."""
    settings = settings if settings is not None else ReplicaSettings()
    ids = ids if ids is not None else RandomIds()
    async with trio.open_nursery() as nursery:
        bus: Bus
        if isinstance(backend, MemoryBackend):
            wall = wall_clock if wall_clock is not None else backend.wall_clock
            memory_bus = MemoryBus(backend.hub)
            bus, store = memory_bus, backend.jobs
            job_store: MemoryJobStore | RedisJobStore = store
        else:
            wall = wall_clock if wall_clock is not None else SystemWallClock()
            redis_bus = parts.redis_bus(backend, keys=keys, log_ttl_s=settings.running_ttl_s)
            job_store = RedisJobStore(
                backend,
                keys=keys if keys is not None else Keys(),
                wall_clock=wall,
                running_ttl_s=settings.running_ttl_s,
                completed_ttl_s=settings.completed_ttl_s,
                stale_job_timeout_ms=settings.stale_job_timeout_s * 1000,
            )
            await nursery.start(redis_bus.run)
            bus = redis_bus
        transport = parts.transport(
            bus,
            nursery=nursery,
            jobs=job_store,
            wall_clock=wall,
            timings=settings.actor_timings(),
            max_event_bytes=settings.max_event_bytes,
            actor_type=parts.actor,
        )
        manager = parts.manager(
            job_store=job_store,
            transport=transport,
            bus=bus,
            wall_clock=wall,
            ids=ids,
            settings=settings.manager_settings(),
        )
        await nursery.start(manager.run)
        if settings.freeze_heap_at_start:
            gc.freeze()
        try:
            yield manager
        finally:
            transport.destroy()
            nursery.cancel_scope.cancel()


def replica_settings(config: StreamConfig) -> ReplicaSettings:
    """The replica settings an environment configuration asks for."""
    return replace(
        ReplicaSettings(),
        reorder_timeout_s=config.reorder_timeout_s,
        reorder_capacity=config.reorder_capacity,
        idle_probe_s=config.idle_probe_s,
        running_ttl_s=config.running_ttl_s,
        completed_ttl_s=config.completed_ttl_s,
        stale_job_timeout_s=int(config.stale_job_timeout_s),
        cleanup_interval_s=config.cleanup_interval_s,
        early_buffer_max_events=config.early_buffer_max_events,
        early_buffer_max_bytes=config.early_buffer_max_bytes,
        max_event_bytes=config.max_event_bytes,
    )


@asynccontextmanager
async def open_configured_replica(
    config: StreamConfig, *, memory: MemoryBackend | None = None
) -> AsyncIterator[GenerationJobManager]:
    """One replica as LibreChat's environment describes it (``StreamConfig.from_env``).

    Without ``USE_REDIS_STREAMS`` it runs on ``memory`` (or a fresh in-process backend);
    with it, on Redis or Redis Cluster, keys prefixed as LibreChat's ioredis does.
    Raises :class:`~streamcheck.impl.BackendUnavailable` (password redacted) if Redis is
    unreachable.
    """
    settings = replica_settings(config)
    if not config.use_redis_streams:
        backend = memory if memory is not None else MemoryBackend(settings=settings)
        async with open_replica(backend, settings=settings) as manager:
            yield manager
        return
    assert config.redis_url is not None  # StreamConfig validates this
    from streamcheck.impl.redis._open import open_redis_client

    async with (
        open_redis_client(
            config.redis_url, cluster=config.use_redis_cluster, client=config.redis_client
        ) as redis,
        open_replica(redis, settings=settings, keys=Keys(config.effective_key_prefix)) as manager,
    ):
        yield manager
