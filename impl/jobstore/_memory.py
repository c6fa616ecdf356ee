"""``MemoryJobStore``: the job store of a single-process deployment.

Everything lives in dicts owned by the instance; no method awaits, so each call is one
atomic step with respect to other trio tasks (and a cancelled call changes nothing).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

from streamcheck.impl._ids import validate_stream_id, validate_user_id
from streamcheck.impl._seams import WallClock
from streamcheck.impl._status import JobStatus, check_transition
from streamcheck.impl._types import JobUpdate, SerializableJobData, UsageMetadata
from streamcheck.impl.jobstore._protocol import ContentSource
from streamcheck.model import JSONValue

__all__ = [
    "DEFAULT_MAX_JOBS",
    "DEFAULT_STALE_JOB_TIMEOUT_MS",
    "MemoryJobStore",
    "MemoryJobStoreStats",
]

logger = logging.getLogger(__name__)

#: LibreChat ``InMemoryJobStore`` option ``maxJobs`` (docs/design.md).
DEFAULT_MAX_JOBS = 1000
#: LibreChat ``staleJobTimeout`` (#13396): 20 minutes of inactivity (docs/librechat.md, bug 14).
DEFAULT_STALE_JOB_TIMEOUT_MS = 20 * 60 * 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryJobStoreStats:
    """A snapshot of a :class:`MemoryJobStore` (counts only, no job data)."""

    jobs: int
    running: int
    terminal: int
    indexed_users: int
    content_states: int
    evicted_total: int
    expired_total: int
    reaped_total: int
    pending_reaped: int


@dataclass(frozen=True, kw_only=True, slots=True)
class _ContentState:
    graph: weakref.ref[ContentSource] | None = None
    parts: tuple[JSONValue, ...] | None = None
    run_steps: tuple[JSONValue, ...] | None = None

    def live_graph(self) -> ContentSource | None:
        return None if self.graph is None else self.graph()


def _apply(job: SerializableJobData, update: JobUpdate) -> SerializableJobData:
    """``job`` with every non-``None`` field of ``update`` copied over."""
    changes = {
        f.name: value
        for f in dataclasses.fields(update)
        if (value := getattr(update, f.name)) is not None
    }
    return dataclasses.replace(job, **changes)


@final
class MemoryJobStore:
    """Jobs, their per-user index and their content state, in process memory.

    The problem it solves: a single replica needs the same job bookkeeping as a Redis
    deployment (status CAS, replacement of a reused stream id, reaping of hung
    generations) without a server.

    Example::

        store = MemoryJobStore(wall_clock=SystemWallClock())
        job = await store.create_job("conv-1", "user-1", generation_id="g1")
        await store.update_job("conv-1", JobUpdate(status=JobStatus.COMPLETE),
                               expected_generation="g1")
        await store.cleanup()          # removes it (ttl_after_complete_ms=0)

    Edge cases:

    * At ``max_jobs`` a new stream id evicts the job with the oldest ``created_at``
      (logged as a warning); replacing an existing stream id never evicts.
    * ``create_job`` on an existing stream id is a replacement: a new generation with
      no field, content state or usage inherited from the old one.
    * A terminal transition without ``completed_at`` is stamped with the clock, so
      the job still expires.
    * ``cleanup`` reaps running jobs idle for more than ``stale_job_timeout_ms``
      (activity comes from :meth:`record_activity`, else ``created_at``); call
      :meth:`take_reaped` afterwards to abort them and tell their clients.
    """

    def __init__(
        self,
        *,
        wall_clock: WallClock,
        max_jobs: int = DEFAULT_MAX_JOBS,
        ttl_after_complete_ms: int = 0,
        stale_job_timeout_ms: int = DEFAULT_STALE_JOB_TIMEOUT_MS,
        start_seq_for: Callable[[str], int] | None = None,
        on_forget: Callable[[str], None] | None = None,
    ) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        if ttl_after_complete_ms < 0:
            raise ValueError(f"ttl_after_complete_ms must be >= 0, got {ttl_after_complete_ms}")
        if stale_job_timeout_ms < 0:
            raise ValueError(
                f"stale_job_timeout_ms must be >= 0 (0 disables), got {stale_job_timeout_ms}"
            )
        self._clock = wall_clock
        self._max_jobs = max_jobs
        self._ttl_after_complete_ms = ttl_after_complete_ms
        self._stale_job_timeout_ms = stale_job_timeout_ms
        self._start_seq_for = start_seq_for
        #: Called when a stream's job is gone for good (expired, deleted, evicted), so
        #: the in-process chunk log can go too (Redis expires it with the job).
        self._on_forget = on_forget
        self._jobs: dict[str, SerializableJobData] = {}
        self._user_jobs: dict[str, set[str]] = {}
        self._content: dict[str, _ContentState] = {}
        self._usage: dict[str, list[UsageMetadata]] = {}
        self._reaped: list[tuple[str, str]] = []
        self._evicted_total = 0
        self._expired_total = 0
        self._reaped_total = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<MemoryJobStore jobs={s.jobs} running={s.running} terminal={s.terminal} "
            f"max_jobs={self._max_jobs} evicted={s.evicted_total} expired={s.expired_total} "
            f"reaped={s.reaped_total} pending_reaped={s.pending_reaped}>"
        )

    def statistics(self) -> MemoryJobStoreStats:
        running = sum(1 for job in self._jobs.values() if not job.status.is_terminal)
        return MemoryJobStoreStats(
            jobs=len(self._jobs),
            running=running,
            terminal=len(self._jobs) - running,
            indexed_users=len(self._user_jobs),
            content_states=len(self._content),
            evicted_total=self._evicted_total,
            expired_total=self._expired_total,
            reaped_total=self._reaped_total,
            pending_reaped=len(self._reaped),
        )

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Nothing to prepare: the store is ready once constructed."""

    async def destroy(self) -> None:
        """Forget every job and all content state (pending reaps included)."""
        self._jobs.clear()
        self._user_jobs.clear()
        self._content.clear()
        self._usage.clear()
        self._reaped.clear()

    async def create_job(
        self,
        stream_id: str,
        user_id: str,
        conversation_id: str | None = None,
        *,
        generation_id: str,
    ) -> SerializableJobData:
        validate_stream_id(stream_id)
        validate_user_id(user_id)
        if stream_id in self._jobs:
            # A replacement: drop the old turn entirely so nothing leaks into the new one
            # (its chunk log stays, as in Redis, until the stream itself is forgotten).
            self._drop(stream_id, replaced=True)
        elif len(self._jobs) >= self._max_jobs:
            self._evict_oldest()
        start_seq = 0 if self._start_seq_for is None else self._start_seq_for(stream_id)
        job = SerializableJobData(
            stream_id=stream_id,
            user_id=user_id,
            status=JobStatus.RUNNING,
            created_at=self._clock.now_ms(),
            generation_id=generation_id,
            start_seq=start_seq,
            conversation_id=conversation_id,
        )
        self._jobs[stream_id] = job
        self._user_jobs.setdefault(user_id, set()).add(stream_id)
        return job

    def _evict_oldest(self) -> None:
        # min() keeps the first of equal keys, i.e. the earliest inserted: deterministic.
        victim = min(self._jobs.values(), key=lambda job: job.created_at)
        logger.warning(
            "job store at capacity (%d jobs); evicting stream %r (status %s, created at %d)",
            self._max_jobs,
            victim.stream_id,
            victim.status.value,
            victim.created_at,
        )
        self._drop(victim.stream_id)
        self._evicted_total += 1

    def _drop(self, stream_id: str, *, replaced: bool = False) -> None:
        """Remove a job with its content state, usage and user-index entry."""
        job = self._jobs.pop(stream_id, None)
        if not replaced and self._on_forget is not None:
            self._on_forget(stream_id)
        self._content.pop(stream_id, None)
        self._usage.pop(stream_id, None)
        if job is not None:
            # Removing the index entry here (LibreChat leaves it to self-healing) keeps
            # the index bounded for users who never list their active jobs.
            ids = self._user_jobs.get(job.user_id)
            if ids is not None:
                ids.discard(stream_id)
                if not ids:
                    del self._user_jobs[job.user_id]

    # -- jobs ------------------------------------------------------------------------

    async def get_job(self, stream_id: str) -> SerializableJobData | None:
        return self._jobs.get(stream_id)

    def peek(self, stream_id: str) -> SerializableJobData | None:
        """The job without awaiting: the in-process publish fence reads it synchronously."""
        return self._jobs.get(stream_id)

    async def has_job(self, stream_id: str) -> bool:
        return stream_id in self._jobs

    async def update_job(
        self, stream_id: str, update: JobUpdate, *, expected_generation: str | None = None
    ) -> bool:
        """Compare-and-set: see :meth:`JobStore.update_job`."""
        job = self._jobs.get(stream_id)
        if job is None or (
            expected_generation is not None and job.generation_id != expected_generation
        ):
            return False
        if update.status is not None:
            check_transition(stream_id, job.status, update.status)
        updated = _apply(job, update)
        if updated.status.is_terminal and updated.completed_at is None:
            # Without a completion time the TTL rule could never remove the job.
            updated = dataclasses.replace(updated, completed_at=self._clock.now_ms())
        self._jobs[stream_id] = updated
        return True

    async def delete_job(self, stream_id: str, *, expected_generation: str | None = None) -> bool:
        """Delete the job (only generation ``expected_generation`` when given)."""
        job = self._jobs.get(stream_id)
        if job is None or (
            expected_generation is not None and job.generation_id != expected_generation
        ):
            return False
        self._drop(stream_id)
        return True

    async def record_activity(self, stream_id: str, generation_id: str) -> None:
        """Stamp ``last_active_at``; a predecessor generation's activity is ignored."""
        job = self._jobs.get(stream_id)
        if job is None or job.generation_id != generation_id:
            return
        self._jobs[stream_id] = dataclasses.replace(job, last_active_at=self._clock.now_ms())

    async def get_running_jobs(self) -> list[SerializableJobData]:
        return [job for job in self._jobs.values() if job.status is JobStatus.RUNNING]

    async def get_job_count(self) -> int:
        """Every job held, terminal ones not yet cleaned up included."""
        return len(self._jobs)

    async def get_job_count_by_status(self, status: JobStatus) -> int:
        return sum(1 for job in self._jobs.values() if job.status is status)

    async def get_active_job_ids_by_user(self, user_id: str) -> list[str]:
        """Running jobs of ``user_id``, sorted; missing or terminal ids leave the index."""
        ids = self._user_jobs.get(user_id)
        if ids is None:
            return []
        active = []
        for stream_id in sorted(ids):
            job = self._jobs.get(stream_id)
            if job is not None and job.user_id == user_id and not job.status.is_terminal:
                active.append(stream_id)
            else:
                ids.discard(stream_id)
        if not ids:
            del self._user_jobs[user_id]
        return active

    async def cleanup(self) -> int:
        """Remove expired terminal jobs and reap stale running ones; return how many.

        Reaped running jobs are queued for :meth:`take_reaped`.
        """
        now = self._clock.now_ms()
        removed = 0
        for stream_id, job in list(self._jobs.items()):
            if job.status.is_terminal:
                completed_at = job.created_at if job.completed_at is None else job.completed_at
                if now - completed_at >= self._ttl_after_complete_ms:
                    self._drop(stream_id)
                    self._expired_total += 1
                    removed += 1
            elif self._stale_job_timeout_ms > 0:
                last_active = job.created_at if job.last_active_at is None else job.last_active_at
                if now - last_active > self._stale_job_timeout_ms:
                    logger.warning(
                        "reaping stale job %r (generation %s): idle for %d ms",
                        stream_id,
                        job.generation_id,
                        now - last_active,
                    )
                    self._drop(stream_id)
                    self._reaped.append((stream_id, job.generation_id))
                    self._reaped_total += 1
                    removed += 1
        return removed

    async def take_reaped(self) -> list[tuple[str, str]]:
        """``(stream_id, generation_id)`` of running jobs reaped since the last call.

        The manager aborts these generations and tells attached clients "Generation
        timed out"; the generation id lets it leave a replacement runtime alone.
        """
        reaped, self._reaped = self._reaped, []
        return reaped

    # -- content state ---------------------------------------------------------------

    def _state(self, stream_id: str) -> _ContentState:
        return self._content.get(stream_id, _ContentState())

    def set_graph(self, stream_id: str, graph: ContentSource) -> None:
        """Remember ``graph`` weakly: the store must not keep a finished graph alive."""
        self._content[stream_id] = dataclasses.replace(
            self._state(stream_id), graph=weakref.ref(graph)
        )

    def set_content_parts(self, stream_id: str, parts: list[JSONValue]) -> None:
        self._content[stream_id] = dataclasses.replace(self._state(stream_id), parts=tuple(parts))

    async def get_content_parts(self, stream_id: str) -> list[JSONValue] | None:
        """The live graph's parts if it has any, else the stored parts, else ``None``."""
        state = self._state(stream_id)
        graph = state.live_graph()
        if graph is not None:
            parts = graph.get_content_parts()
            if parts:
                return list(parts)
        return None if state.parts is None else list(state.parts)

    async def get_run_steps(self, stream_id: str) -> list[JSONValue]:
        """The live graph's run steps if it has any, else the saved ones, else ``[]``."""
        state = self._state(stream_id)
        graph = state.live_graph()
        if graph is not None:
            steps = graph.get_run_steps()
            if steps:
                return list(steps)
        return [] if state.run_steps is None else list(state.run_steps)

    async def save_run_steps(self, stream_id: str, steps: Sequence[JSONValue]) -> None:
        self._content[stream_id] = dataclasses.replace(
            self._state(stream_id), run_steps=tuple(steps)
        )

    async def clear_content_state(self, stream_id: str) -> None:
        self._content.pop(stream_id, None)

    def set_collected_usage(self, stream_id: str, usage: Sequence[UsageMetadata]) -> None:
        self._usage[stream_id] = list(usage)

    def get_collected_usage(self, stream_id: str) -> list[UsageMetadata]:
        return list(self._usage.get(stream_id, ()))
