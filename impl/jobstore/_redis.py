"""``RedisJobStore``: the job store shared by every replica, on LibreChat's key layout.

Keys (docs/design.md, "Redis layout"; ``{id}`` is the Cluster hash tag):

* ``stream:{id}:job`` hash, camelCase fields (see :mod:`streamcheck.impl.jobstore._codec`);
  TTL 1200 s while running, 300 s once terminal.
* ``stream:{id}:chunks`` the transport's chunk log: read for resume content, given the
  terminal TTL, deleted with the job. ``stream:{id}:runsteps`` JSON array (SET … EX).
* ``stream:{id}:seq`` the transport's counter, read once at creation for ``startSeq``.
* ``stream:running`` and ``stream:user:{userId}:jobs`` sets: cross-slot indices, kept
  by separate commands and healed lazily (a reader drops ids that are missing or no
  longer running, then re-adds any that a concurrent create made running again). A
  user set expires 24 h after that user's last create (LibreChat's later
  ``userJobsSetTtl``), so the index of a user who never lists their jobs does not stay
  for ever; ``stream:running`` empties itself as jobs end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from collections.abc import Iterable, Sequence
from typing import Final, final

from streamcheck.impl._content import aggregate_content, collect_run_steps
from streamcheck.impl._errors import IllegalTransition
from streamcheck.impl._ids import validate_stream_id, validate_user_id
from streamcheck.impl._seams import WallClock
from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import JobUpdate, SerializableJobData, UsageMetadata
from streamcheck.impl.jobstore import _lua
from streamcheck.impl.jobstore._codec import decode_job, encode_job, encode_update
from streamcheck.impl.jobstore._protocol import ContentSource
from streamcheck.impl.jobstore._redis_support import (
    LocalContent,
    RedisJobStoreStats,
    read_generation_events,
    script_args,
    script_text,
)
from streamcheck.impl.redis import Keys, RedisLike
from streamcheck.model import JSONValue

__all__ = [
    "COMPLETED_TTL_S",
    "RUNNING_TTL_S",
    "STALE_JOB_TIMEOUT_MS",
    "USER_JOBS_TTL_S",
    "RedisJobStore",
    "RedisJobStoreStats",
]

logger = logging.getLogger(__name__)

#: LibreChat ``RedisJobStore`` ``runningTtl``: job hash TTL while running (docs/design.md).
RUNNING_TTL_S: Final = 1200
#: LibreChat ``completedTtl``: job hash TTL after a terminal update (docs/design.md).
COMPLETED_TTL_S: Final = 300
#: Stale-job timeout, the same 20 minutes as the in-memory store (#13396).
STALE_JOB_TIMEOUT_MS: Final = 1200 * 1000
#: LibreChat's later ``userJobsSetTtl``: a user's job index expires this long after the
#: user's last create (never sooner than a job created with it, see ``_user_jobs_ttl_s``).
USER_JOBS_TTL_S: Final = 86_400
_DEFAULT_KEYS: Final = Keys()


@final
class RedisJobStore:
    """Jobs in Redis, every status change an atomic compare-and-set script.

    The problem it solves: several replicas share jobs, and a late write from one turn
    must never damage the next turn on the same stream id (docs/librechat.md, bugs 16 and 20).
    Every write to a job hash is a Lua script that checks the generation; a replacement
    job is never updated, deleted or reaped by its predecessor's callers.

    Example::

        store = RedisJobStore(redis, keys=Keys(prefix="app:"), wall_clock=SystemWallClock())
        job = await store.create_job("conv-1", "user-1", generation_id="g1")
        await store.update_job("conv-1", JobUpdate(status=JobStatus.COMPLETE),
                               expected_generation="g1")   # hash now expires in 300 s

    Edge cases:

    * Terminal jobs are not indexed, so counts by status other than running are 0 and
      terminal jobs leave by TTL, not by :meth:`cleanup`.
    * A terminal update expires the chunk log with the job instead of deleting it, so
      a subscriber arriving late can still replay the turn.
    * Graphs and collected usage are local to this replica: an abort handled on another
      replica has no usage and falls back to counting the text, as LibreChat does.
    * A cancelled call may leave an index entry stale (never missing for a created
      job); readers heal stale entries.
    """

    def __init__(
        self,
        redis: RedisLike,
        *,
        keys: Keys = _DEFAULT_KEYS,
        wall_clock: WallClock,
        running_ttl_s: int = RUNNING_TTL_S,
        completed_ttl_s: int = COMPLETED_TTL_S,
        stale_job_timeout_ms: int = STALE_JOB_TIMEOUT_MS,
    ) -> None:
        if running_ttl_s < 1 or completed_ttl_s < 1:
            raise ValueError(
                f"TTLs must be at least 1 s, got running_ttl_s={running_ttl_s}, "
                f"completed_ttl_s={completed_ttl_s}"
            )
        if stale_job_timeout_ms < 0:
            raise ValueError(
                f"stale_job_timeout_ms must be >= 0 (0 disables), got {stale_job_timeout_ms}"
            )
        self._redis = redis
        self._keys = keys
        self._clock = wall_clock
        self._running_ttl_s = running_ttl_s
        self._completed_ttl_s = completed_ttl_s
        # The index must outlive an idle job created with it, whatever the running TTL.
        self._user_jobs_ttl_s = max(USER_JOBS_TTL_S, running_ttl_s)
        self._stale_job_timeout_ms = stale_job_timeout_ms
        self._local = LocalContent()
        self._reaped: list[tuple[str, str]] = []
        self._reaped_total = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<RedisJobStore prefix={self._keys.prefix!r} local_graphs={s.local_graphs} "
            f"usage_entries={s.usage_entries} reaped={s.reaped_total} "
            f"pending_reaped={s.pending_reaped}>"
        )

    def statistics(self) -> RedisJobStoreStats:
        return RedisJobStoreStats(
            local_graphs=len(self._local.graphs),
            live_graphs=sum(1 for ref in self._local.graphs.values() if ref() is not None),
            usage_entries=len(self._local.usage),
            reaped_total=self._reaped_total,
            pending_reaped=len(self._reaped),
        )

    def _job_keys(self, stream_id: str) -> list[str]:
        k = self._keys
        return [k.job(stream_id), k.chunks(stream_id), k.run_steps(stream_id)]

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Nothing to prepare: scripts load on first use (``run_script`` handles NOSCRIPT)."""

    async def destroy(self) -> None:
        """Drop this replica's local state; jobs in Redis belong to every replica."""
        self._local.clear()
        self._reaped.clear()

    async def create_job(
        self,
        stream_id: str,
        user_id: str,
        conversation_id: str | None = None,
        *,
        generation_id: str,
    ) -> SerializableJobData:
        """Create (or replace) the job; ``start_seq`` is the stream counter's value.

        The indices are written before and after the script: before, so a cancelled
        call leaves at worst a stale (self-healing) entry; after, so a reader healing
        the index concurrently cannot leave the new job unindexed.
        """
        validate_stream_id(stream_id)
        validate_user_id(user_id)
        job = SerializableJobData(
            stream_id=stream_id,
            user_id=user_id,
            status=JobStatus.RUNNING,
            created_at=self._clock.now_ms(),
            generation_id=generation_id,
            conversation_id=conversation_id,
        )
        await self._index(stream_id, user_id)
        reply = await self._redis.run_script(
            _lua.CREATE,
            keys=[
                self._keys.job(stream_id),
                self._keys.seq(stream_id),
                self._keys.run_steps(stream_id),
            ],
            args=[self._running_ttl_s, *script_args(encode_job(job))],
        )
        await self._index(stream_id, user_id)
        self._local.forget(stream_id)
        return dataclasses.replace(job, start_seq=int(script_text(reply)))

    async def _index(self, stream_id: str, user_id: str) -> None:
        await self._redis.sadd(self._keys.running, stream_id)
        await self._add_to_user_jobs(self._keys.user_jobs(user_id), stream_id)

    async def _add_to_user_jobs(self, key: str, stream_id: str) -> None:
        await self._redis.sadd(key, stream_id)
        await self._redis.expire(key, self._user_jobs_ttl_s)

    async def _unindex(self, set_key: str, ids: Sequence[str], *, user_id: str | None) -> None:
        """SREM ``ids``, then re-add those a concurrent create made running meanwhile."""
        if not ids:
            return
        await self._redis.srem(set_key, *ids)
        for stream_id in ids:
            job = await self.get_job(stream_id)
            if job is None or job.status is not JobStatus.RUNNING:
                continue
            if user_id is None:
                await self._redis.sadd(set_key, stream_id)
            elif job.user_id == user_id:
                await self._add_to_user_jobs(set_key, stream_id)

    # -- jobs ------------------------------------------------------------------------

    async def get_job(self, stream_id: str) -> SerializableJobData | None:
        return decode_job(stream_id, await self._redis.hgetall(self._keys.job(stream_id)))

    async def has_job(self, stream_id: str) -> bool:
        return await self._redis.exists(self._keys.job(stream_id))

    async def update_job(
        self, stream_id: str, update: JobUpdate, *, expected_generation: str | None = None
    ) -> bool:
        """Compare-and-set in one script: see :meth:`JobStore.update_job`."""
        requested = "" if update.status is None else update.status.value
        reply = script_text(
            await self._redis.run_script(
                _lua.UPDATE,
                keys=self._job_keys(stream_id),
                args=[
                    expected_generation or "",
                    requested,
                    self._completed_ttl_s,
                    self._clock.now_ms(),
                    *script_args(encode_update(update)),
                ],
            )
        )
        if reply == "missing":
            return False
        if reply.startswith("illegal:"):
            raise IllegalTransition(
                stream_id=stream_id, current=reply.removeprefix("illegal:"), requested=requested
            )
        if reply == "terminal":
            await self._unindex(self._keys.running, [stream_id], user_id=None)
        elif reply != "ok":
            raise RuntimeError(f"unexpected reply {reply!r} from the {_lua.UPDATE.name} script")
        return True

    async def _delete(self, stream_id: str, generation: str | None, cutoff: int | None) -> bool:
        reply = await self._redis.run_script(
            _lua.DELETE,
            keys=self._job_keys(stream_id),
            args=[generation or "", "" if cutoff is None else cutoff],
        )
        return script_text(reply) == "1"

    async def delete_job(self, stream_id: str, *, expected_generation: str | None = None) -> bool:
        """Delete job, run steps and chunk log (only generation ``expected_generation``)."""
        deleted = await self._delete(stream_id, expected_generation, None)
        if deleted or expected_generation is None:
            self._local.forget(stream_id)
            await self._unindex(self._keys.running, [stream_id], user_id=None)
        return deleted

    async def record_activity(self, stream_id: str, generation_id: str) -> None:
        """Stamp ``lastActiveAt`` (current generation only) and extend the running TTL."""
        await self._redis.run_script(
            _lua.TOUCH,
            keys=[self._keys.job(stream_id)],
            args=[generation_id, self._clock.now_ms(), self._running_ttl_s],
        )

    async def _jobs_of(self, ids: Iterable[str]) -> list[tuple[str, SerializableJobData | None]]:
        return [(stream_id, await self.get_job(stream_id)) for stream_id in sorted(ids)]

    async def get_running_jobs(self) -> list[SerializableJobData]:
        """Running jobs, oldest first."""
        jobs = await self._jobs_of(await self._redis.smembers(self._keys.running))
        running = [job for _, job in jobs if job is not None and job.status is JobStatus.RUNNING]
        return sorted(running, key=lambda job: (job.created_at, job.stream_id))

    async def get_job_count(self) -> int:
        """The size of the running index (approximate until the next cleanup)."""
        return await self._redis.scard(self._keys.running)

    async def get_job_count_by_status(self, status: JobStatus) -> int:
        """Running: the index size. Terminal statuses: 0, since only running is indexed
        (counting them would mean scanning the keyspace)."""
        return await self.get_job_count() if status is JobStatus.RUNNING else 0

    async def get_active_job_ids_by_user(self, user_id: str) -> list[str]:
        """Running jobs of ``user_id``, sorted; missing, terminal or foreign ids leave."""
        key = self._keys.user_jobs(user_id)
        active: list[str] = []
        stale: list[str] = []
        for stream_id, job in await self._jobs_of(await self._redis.smembers(key)):
            if job is not None and job.status is JobStatus.RUNNING and job.user_id == user_id:
                active.append(stream_id)
            else:
                stale.append(stream_id)
        await self._unindex(key, stale, user_id=user_id)
        return active

    async def cleanup(self) -> int:
        """Heal the running index and reap stale running jobs; return how many ids left it.

        Terminal jobs expire by TTL. A job idle for over ``stale_job_timeout_ms`` is
        deleted by a script re-checking generation and idleness atomically, so a
        replacement or a just-active job survives. Reaped jobs go to :meth:`take_reaped`.
        """
        now = self._clock.now_ms()
        timeout = self._stale_job_timeout_ms
        leaving: list[str] = []
        for stream_id, job in await self._jobs_of(await self._redis.smembers(self._keys.running)):
            if job is None or job.status.is_terminal:
                leaving.append(stream_id)
                continue
            last_active = job.created_at if job.last_active_at is None else job.last_active_at
            if timeout == 0 or now - last_active <= timeout:
                continue
            if await self._delete(stream_id, job.generation_id, now - timeout):
                idle, gen = now - last_active, job.generation_id
                logger.warning(
                    "reaping stale job %r (generation %s): idle %d ms", stream_id, gen, idle
                )
                self._reaped.append((stream_id, job.generation_id))
                self._reaped_total += 1
                leaving.append(stream_id)
        await self._unindex(self._keys.running, leaving, user_id=None)
        # Local state of jobs that vanished (deleted elsewhere, expired) would leak.
        for stream_id in self._local.streams():
            if not await self._redis.exists(self._keys.job(stream_id)):
                self._local.forget(stream_id)
        return len(leaving)

    async def take_reaped(self) -> list[tuple[str, str]]:
        """``(stream_id, generation_id)`` of running jobs reaped since the last call."""
        reaped, self._reaped = self._reaped, []
        return reaped

    # -- content state ---------------------------------------------------------------

    def set_graph(self, stream_id: str, graph: ContentSource) -> None:
        """Remember ``graph`` weakly, on this replica only."""
        self._local.graphs[stream_id] = weakref.ref(graph)

    def set_content_parts(self, stream_id: str, parts: list[JSONValue]) -> None:
        """Ignored, as in LibreChat's Redis store: the chunk log is the shared copy of
        the content, and parts kept on one replica would go stale behind it."""
        del stream_id, parts

    async def _log_events(self, stream_id: str) -> list[JSONValue] | None:
        job = await self.get_job(stream_id)
        if job is None:
            return None
        return await read_generation_events(
            self._redis,
            self._keys.chunks(stream_id),
            generation_id=job.generation_id,
            start_seq=job.start_seq,
        )

    async def get_content_parts(self, stream_id: str) -> list[JSONValue] | None:
        """The local graph's parts if it has any, else the current turn folded from the
        chunk log, else ``None``."""
        graph = self._local.live_graph(stream_id)
        if graph is not None and (parts := graph.get_content_parts()):
            return list(parts)
        events = await self._log_events(stream_id)
        return None if events is None else aggregate_content(events)

    async def get_run_steps(self, stream_id: str) -> list[JSONValue]:
        """Local graph, else the saved run steps, else those in the chunk log, else ``[]``."""
        graph = self._local.live_graph(stream_id)
        if graph is not None and (steps := graph.get_run_steps()):
            return list(steps)
        raw = await self._redis.get(self._keys.run_steps(stream_id))
        if raw is not None:
            try:
                saved = json.loads(raw)
            except ValueError:
                saved = None
            if isinstance(saved, list):
                return saved
            logger.warning("stream %r: saved run steps are not a JSON array", stream_id)
        events = await self._log_events(stream_id)
        return [] if events is None else collect_run_steps(events)

    async def save_run_steps(self, stream_id: str, steps: Sequence[JSONValue]) -> None:
        await self._redis.run_script(
            _lua.SET_EX,
            keys=[self._keys.run_steps(stream_id)],
            args=[json.dumps(list(steps), separators=(",", ":")), self._running_ttl_s],
        )

    async def clear_content_state(self, stream_id: str) -> None:
        """Drop the local graph and the saved run steps; the chunk log expires on its own."""
        self._local.graphs.pop(stream_id, None)
        await self._redis.delete(self._keys.run_steps(stream_id))

    def set_collected_usage(self, stream_id: str, usage: Sequence[UsageMetadata]) -> None:
        self._local.usage[stream_id] = list(usage)

    def get_collected_usage(self, stream_id: str) -> list[UsageMetadata]:
        """This replica's usage for the stream (``[]`` elsewhere: see the class notes)."""
        return list(self._local.usage.get(stream_id, ()))
