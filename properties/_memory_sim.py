"""The memory backend in the simulation: replicas of impl/ sharing one
:class:`~streamcheck.impl.MemoryBackend` (its hub, which plays Redis for replicas in one
process, and its job store), exactly as an application runs them.

Its delivery model: the hub fences, allocates the seq, appends to the log and fans the
message out to every subscribed replica in one synchronous call, and no call of the
memory bus or job store awaits anything. So nothing in the backend is a step to draw:
what varies is the order of the world's decisions, the order in which trio runs the
tasks woken together (``shuffle_tasks`` seeds it before every decision) and the mock
clock (the job store's wall clock included), which only clock decisions move.

Drawing the hub's calls or deliveries as steps (a bus subclass parking each call, or
each replica's copy of a message, until a decision runs it) was tried and dropped: it
reaches states the hub cannot, such as an idle probe reading a chunk from the log while
that chunk's fan-out to the reader's replica is still held back, which the checker
rightly reports as a slow path without cause (docs/simulation.md).
"""

from __future__ import annotations

from streamcheck.impl import MemoryBackend, ReplicaSettings, SerializableJobData, WallClock
from streamcheck.model import History, KeyspaceProblem
from streamcheck.properties.sim import PendingItem

__all__ = ["EarlyExpiryWatch", "SharedMemory", "audit_memory_store", "job_states"]


class SharedMemory:
    """The memory backend the world's replicas share, with the driver's view of it: no
    step is ever pending (see the module docstring)."""

    def __init__(self, *, wall_clock: WallClock, settings: ReplicaSettings) -> None:
        self.backend = MemoryBackend(wall_clock=wall_clock, settings=settings)

    def runnable(self) -> list[PendingItem]:
        return []

    def pending(self) -> list[PendingItem]:
        return []

    def step(self, item_id: int) -> None:
        raise ValueError(f"item {item_id} is not runnable: the memory backend has no steps")

    def run_until_quiet(self) -> int:
        return 0

    def set_auto(self, auto: bool) -> None:
        """Nothing waits for a step, in either mode."""

    def job(self, stream_id: str) -> SerializableJobData | None:
        """The stream's job, read outside the simulation (no await, no effect)."""
        return self.backend.jobs.peek(stream_id)


# -- judging the job store (the memory twin of properties/_store_audit.py) ---------------


def job_states(memory: SharedMemory, streams: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """Each of ``streams``' job as (generation, status), for ``JobStoreWatcher.observe``."""
    states: dict[str, tuple[str | None, str | None]] = {}
    for stream in streams:
        job = memory.job(stream)
        if job is not None:
            states[stream] = (job.generation_id, job.status.value)
    return states


class EarlyExpiryWatch:
    """A finished job stays for its TTL, so that a late client still replays the turn;
    in the memory job store only the cleanup's TTL rule removes a finished job (the
    manager deletes none). After every decision: a finished job gone before its TTL
    passed is a ``KeyspaceProblem``."""

    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        #: Each stream's finished job when last seen: (generation, completed at, ms).
        self._finished: dict[str, tuple[str, int]] = {}

    def sample(
        self,
        memory: SharedMemory,
        streams: set[str],
        history: History,
        now: float,
        *,
        wall_now_ms: int,
    ) -> None:
        for stream in sorted(streams):
            job = memory.job(stream)
            before = self._finished.pop(stream, None)
            if job is None and before is not None:
                generation, completed_at = before
                age = wall_now_ms - completed_at
                if age < self._ttl_ms:
                    history.append(
                        KeyspaceProblem(
                            time=now,
                            key=f"memory job {stream}",
                            problem=(
                                f"of finished generation {generation} was removed at most "
                                f"{age / 1000:g} s after it finished, before its TTL of "
                                f"{self._ttl_ms / 1000:g} s"
                            ),
                        )
                    )
            if job is not None and job.status.is_terminal and job.completed_at is not None:
                self._finished[stream] = (job.generation_id, job.completed_at)


def audit_memory_store(
    memory: SharedMemory,
    streams: set[str],
    history: History,
    now: float,
    listings: list[tuple[str, tuple[str, ...]]],
    *,
    wall_now_ms: int,
    expired_after_ms: int,
) -> None:
    """After the heal, append a ``KeyspaceProblem`` for every broken invariant of the
    memory job store:

    * each user's job listing, made once all was quiet, names exactly that user's
      running jobs;
    * no job is still running: the heal finished every turn and passed the producer
      timeout, and in one process nothing can lose a status write (no crash, no cut
      connection), so a running job is one whose end was never recorded;
    * no finished job is older than ``expired_after_ms`` (its TTL plus one cleanup
      interval: a cleanup pass has run since it expired).
    """
    running_of: dict[str, set[str]] = {}
    for stream in sorted(streams):
        job = memory.job(stream)
        if job is not None and job.status.is_terminal and job.completed_at is not None:
            age = wall_now_ms - job.completed_at
            if age > expired_after_ms:
                history.append(
                    KeyspaceProblem(
                        time=now,
                        key=f"memory job {stream}",
                        problem=(
                            f"finished {age / 1000:g} s ago and is still stored: it outlived "
                            f"its TTL and the cleanup pass after it"
                        ),
                    )
                )
        if job is not None and not job.status.is_terminal:
            running_of.setdefault(job.user_id, set()).add(stream)
            history.append(
                KeyspaceProblem(
                    time=now,
                    key=f"memory job {stream}",
                    problem=(
                        f"is still {job.status.value} (generation {job.generation_id}) after "
                        "every turn ended and every timeout passed: its end was never recorded"
                    ),
                )
            )
    for user, listed in listings:
        expected = running_of.get(user, set())
        if set(listed) != expected:
            history.append(
                KeyspaceProblem(
                    time=now,
                    key=f"memory job index of {user}",
                    problem=(
                        f"lists the jobs {sorted(listed)} as active, but the running jobs "
                        f"of user {user} are {sorted(expected)}"
                    ),
                )
            )
