"""What the simulated world records about the shared job store, for the checker.

Two views, both read outside the simulation (``SimRedis.peek``: no step, no trace):

* :class:`JobStoreWatcher`, after every decision: each stream's job (generation and
  status) when it changed since the last look, as a ``JobObserved`` record. The checker
  judges the sequence (a terminal status never changes; a job that left never comes
  back), so a store that rewrites a finished turn or resurrects a deleted one is seen
  even when no reader happens to notice.
* :func:`audit_keyspace`, once the heal is over: every key has a TTL (the running index
  excepted: it empties itself as jobs end), every job hash decodes, no job is still
  running if a replica was up to reap (the heal ended every live generator and passed
  the stale-job timeout, so the job of a producer that is gone was reaped), every
  running job is in the running index and in its user's index, and each user's job
  listing (made through a replica once all is quiet) names exactly that user's running
  jobs. Each problem becomes a ``KeyspaceProblem`` record.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamcheck.impl import SerializableJobData
from streamcheck.impl.jobstore import decode_job
from streamcheck.impl.redis import Keys
from streamcheck.model import History, JobObserved, KeyspaceProblem
from streamcheck.properties.sim import SimRedis

_KEYS = Keys()
_JOB_PREFIX, _JOB_SUFFIX = "stream:{", "}:job"


def _job_keys(sim: SimRedis) -> list[str]:
    found = sim.peek("KEYS", _KEYS.job("*"))
    assert isinstance(found, list)
    return sorted(str(key) for key in found)


def _stream_of(job_key: str) -> str:
    return job_key[len(_JOB_PREFIX) : -len(_JOB_SUFFIX)]


def _hash(sim: SimRedis, key: str) -> dict[str, str]:
    raw = sim.peek("HGETALL", key)
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):  # a flat [field, value, ...] reply
        return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {}


class JobStoreWatcher:
    """Records each stream's job whenever it changed (see the module docstring)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str | None, str | None]] = {}

    def sample(self, sim: SimRedis, history: History, now: float) -> None:
        current: dict[str, tuple[str | None, str | None]] = {}
        for key in _job_keys(sim):
            fields = _hash(sim, key)
            current[_stream_of(key)] = (fields.get("generationId"), fields.get("status"))
        self.observe(current, history, now)

    def observe(
        self, current: dict[str, tuple[str | None, str | None]], history: History, now: float
    ) -> None:
        """Record what changed, given each stream's (generation, status) now (a stream
        missing from ``current`` has no job)."""
        for stream in sorted(set(current) | set(self._seen)):
            state = current.get(stream, (None, None))
            if self._seen.get(stream, (None, None)) != state:
                self._seen[stream] = state
                generation, status = state
                history.append(
                    JobObserved(time=now, stream_id=stream, generation=generation, status=status)
                )


def _jobs(sim: SimRedis) -> list[tuple[str, SerializableJobData | None]]:
    jobs: list[tuple[str, SerializableJobData | None]] = []
    for key in _job_keys(sim):
        try:
            jobs.append((key, decode_job(_stream_of(key), _hash(sim, key))))
        except (ValueError, KeyError, TypeError):
            jobs.append((key, None))
    return jobs


def users_in_store(sim: SimRedis) -> list[str]:
    """Every user with a job or a job index in the store."""
    users = {job.user_id for _, job in _jobs(sim) if job is not None}
    pattern = _KEYS.user_jobs("*")
    prefix, suffix = pattern.split("*")
    found = sim.peek("KEYS", pattern)
    assert isinstance(found, list)
    users |= {str(key)[len(prefix) : -len(suffix)] for key in found}
    return sorted(users)


def audit_keyspace(
    sim: SimRedis,
    history: History,
    now: float,
    *,
    listings: Sequence[tuple[str, tuple[str, ...]]] = (),
    reaped: bool = False,
) -> None:
    """Append a ``KeyspaceProblem`` for every broken invariant (module docstring).
    ``listings`` are users' job listings made once all was quiet: each must name exactly
    that user's running jobs. ``reaped``: a replica ran cleanup passes all through the
    heal, so no job may still be running."""
    problems: list[tuple[str, str]] = []
    running_of: dict[str, set[str]] = {}
    for key, job in _jobs(sim):
        if job is not None and not job.status.is_terminal:
            running_of.setdefault(job.user_id, set()).add(_stream_of(key))
    for user, listed in listings:
        expected = running_of.get(user, set())
        if set(listed) != expected:
            problems.append(
                (
                    _KEYS.user_jobs(user),
                    f"lists the jobs {sorted(listed)} as active, but the running jobs of "
                    f"user {user} are {sorted(expected)}",
                )
            )
    everything = sim.peek("KEYS", "*")
    assert isinstance(everything, list)
    for key in sorted(str(k) for k in everything):
        ttl = sim.peek("TTL", key)
        if ttl == -1 and key != _KEYS.running:
            problems.append((key, "has no TTL: it would outlive every turn"))
    running = {str(m) for m in _members(sim, _KEYS.running)}
    for key in _job_keys(sim):
        stream = _stream_of(key)
        try:
            job = decode_job(stream, _hash(sim, key))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append((key, f"does not decode as a job ({exc})"))
            continue
        if job is None:
            problems.append((key, "does not decode as a job"))
            continue
        if reaped and not job.status.is_terminal:
            problems.append(
                (
                    key,
                    "is still running after the heal: its generator ended or is gone, and "
                    "a job whose producer falls silent is reaped past the stale-job timeout",
                )
            )
            if stream not in running:
                problems.append((key, f"is running but missing from {_KEYS.running}"))
            user_index = _KEYS.user_jobs(job.user_id)
            if stream not in {str(m) for m in _members(sim, user_index)}:
                problems.append((key, f"is running but missing from {user_index}"))
    for key, problem in problems:
        history.append(KeyspaceProblem(time=now, key=key, problem=problem))


def _members(sim: SimRedis, key: str) -> list[object]:
    found = sim.peek("SMEMBERS", key)
    return list(found) if isinstance(found, list | set | tuple) else []
