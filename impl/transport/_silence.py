"""Whether a silent reader's turn has ended without a word (sans-IO).

A reader that has heard nothing for a while, and whose chunk log holds nothing past its
frontier, must not wait for ever: the producer may have died, the job may have expired,
or the turn may have ended before its terminal reached the log. A
:class:`SilenceInquiry` decides which, one question at a time. It asks the shell for
I/O (:class:`ReadJob`, :class:`CheckLostWrites`, :class:`FenceProducer`,
:class:`ReadLogTail`), is told what came back, and ends with an outcome:
:class:`KeepWaiting`, :class:`Resync` (read the log again) or :class:`EndWith` a
terminal. It reads no clock (the wall-clock time comes in with the job) and does no
I/O, so every path is a unit test without trio.

The order of questions is the protocol:

1. Read the job. Unreadable: keep waiting (the next idle probe asks again). The job
   alone says whether the turn is over (:func:`silent_subscriber_verdict`); if not,
   keep waiting.
2. Before concluding from silence, have Redis's lost writes logged as lost (the silence
   may be writes a failover lost that nobody has logged yet). If any lost seq is at or
   past the reader's frontier, read the log again: the lost seqs arrive as a gap first.
3. The job still runs this turn (so the verdict is that its producer timed out): fence
   the producer first, recording its turn as failed, then keep waiting; the next probe
   reads what it published before the fence and the failure the job now stores.
4. The job ended this turn after the reader last read the log: read one row past the
   frontier before making a terminal up. A row there (the real terminal among the
   events) means read the log again; an unreadable log means keep waiting.
5. Otherwise end the reader with the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import TypeVar

from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import SerializableJobData
from streamcheck.impl.transport._verdict import silent_subscriber_verdict
from streamcheck.model import Done, Failure


@dataclass(frozen=True, slots=True)
class ReadJob:
    """Read the stream's job record, then call ``job_read`` (or ``job_unreadable``)."""


@dataclass(frozen=True, slots=True)
class CheckLostWrites:
    """Have writes Redis lost logged as lost, then call ``lost_writes_checked``."""


@dataclass(frozen=True, slots=True)
class FenceProducer:
    """Record ``generation``'s turn as failed (if the job still runs it), then call
    ``producer_fenced``."""

    generation: str


@dataclass(frozen=True, slots=True)
class ReadLogTail:
    """Read one chunk-log row from ``from_seq``, then call ``log_tail_read`` (or
    ``log_tail_unreadable``)."""

    from_seq: int


@dataclass(frozen=True, slots=True)
class KeepWaiting:
    """Nothing is decided: the reader waits for its next idle probe."""


@dataclass(frozen=True, slots=True)
class Resync:
    """The log may hold what the reader lacks: read it again from the frontier."""


@dataclass(frozen=True, slots=True)
class EndWith:
    """The turn is over and its terminal is nowhere to be read: deliver this one."""

    terminal: Done | Failure


SilenceRequest = ReadJob | CheckLostWrites | FenceProducer | ReadLogTail
SilenceOutcome = KeepWaiting | Resync | EndWith
_O = TypeVar("_O", bound=SilenceOutcome)


class _Stage(Enum):
    START = auto()
    JOB = auto()
    LOST_WRITES = auto()
    FENCE = auto()
    LOG_TAIL = auto()
    DONE = auto()


class _JobSays(Enum):
    """What the job record said of the reader's turn, given that it is over."""

    #: Gone, or replaced by another turn.
    NOT_THIS_TURN = auto()
    #: Still running this turn: its producer went silent past the timeout.
    STILL_RUNNING = auto()
    #: This turn ended (completed, aborted or failed).
    ENDED = auto()


class SilenceInquiry:
    """One idle probe's decision for one reader (see the module docstring).

    Each answer method may be called only when the previous result asked for it; a
    call out of turn raises :class:`RuntimeError` (a bug in the shell).
    """

    __slots__ = (
        "_generation",
        "_job_says",
        "_next_seq",
        "_producer_timeout_ms",
        "_stage",
        "_terminal",
    )

    def __init__(self, *, generation: str, next_seq: int, producer_timeout_ms: int) -> None:
        self._generation = generation
        self._next_seq = next_seq
        self._producer_timeout_ms = producer_timeout_ms
        self._stage = _Stage.START
        self._job_says = _JobSays.NOT_THIS_TURN
        self._terminal: Done | Failure | None = None

    def start(self) -> ReadJob:
        self._advance(_Stage.START, _Stage.JOB)
        return ReadJob()

    def job_read(
        self, job: SerializableJobData | None, *, now_ms: int
    ) -> CheckLostWrites | KeepWaiting:
        """``job`` as read (``None``: no such job), ``now_ms`` the wall clock then."""
        verdict = silent_subscriber_verdict(
            job,
            generation=self._generation,
            next_seq=self._next_seq,
            now_ms=now_ms,
            producer_timeout_ms=self._producer_timeout_ms,
        )
        if verdict is None:
            return self._finish(_Stage.JOB, KeepWaiting())
        self._advance(_Stage.JOB, _Stage.LOST_WRITES)
        self._terminal = verdict
        if job is not None and job.generation_id == self._generation:
            running = job.status is JobStatus.RUNNING
            self._job_says = _JobSays.STILL_RUNNING if running else _JobSays.ENDED
        return CheckLostWrites()

    def job_unreadable(self) -> KeepWaiting:
        return self._finish(_Stage.JOB, KeepWaiting())

    def lost_writes_checked(
        self, last_lost_seq: int | None
    ) -> Resync | FenceProducer | ReadLogTail | EndWith:
        """``last_lost_seq``: the highest seq just logged as lost (``None``: none, or
        the check failed)."""
        if last_lost_seq is not None and last_lost_seq >= self._next_seq:
            return self._finish(_Stage.LOST_WRITES, Resync())
        if self._job_says is _JobSays.STILL_RUNNING:
            self._advance(_Stage.LOST_WRITES, _Stage.FENCE)
            return FenceProducer(self._generation)
        if self._job_says is _JobSays.ENDED:
            self._advance(_Stage.LOST_WRITES, _Stage.LOG_TAIL)
            return ReadLogTail(self._next_seq)
        return self._finish(_Stage.LOST_WRITES, self._end())

    def producer_fenced(self) -> KeepWaiting:
        """The fence was attempted (whether it wrote anything or not)."""
        return self._finish(_Stage.FENCE, KeepWaiting())

    def log_tail_read(self, *, found: bool) -> Resync | EndWith:
        """``found``: the log has a row at or past the reader's frontier."""
        return self._finish(_Stage.LOG_TAIL, Resync() if found else self._end())

    def log_tail_unreadable(self) -> KeepWaiting:
        return self._finish(_Stage.LOG_TAIL, KeepWaiting())

    def _end(self) -> EndWith:
        assert self._terminal is not None  # set in job_read before any later stage
        return EndWith(self._terminal)

    def _advance(self, expected: _Stage, to: _Stage) -> None:
        if self._stage is not expected:
            raise RuntimeError(
                f"silence inquiry answered out of turn: at {self._stage.name}, "
                f"expected {expected.name}"
            )
        self._stage = to

    def _finish(self, expected: _Stage, outcome: _O) -> _O:
        self._advance(expected, _Stage.DONE)
        return outcome
