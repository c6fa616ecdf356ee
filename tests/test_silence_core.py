"""The silence decisions of a stream's actor, as a sans-IO core (no trio, no Redis).

Unit tests of an impl/ internal: they import the private module on purpose.
"""

from __future__ import annotations

import pytest

from streamcheck.impl._reorder import SUPERSEDED
from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import SerializableJobData
from streamcheck.impl.transport._silence import (
    CheckLostWrites,
    EndWith,
    FenceProducer,
    KeepWaiting,
    ReadJob,
    ReadLogTail,
    Resync,
    SilenceInquiry,
)
from streamcheck.impl.transport._verdict import STREAM_LOST
from streamcheck.model import Done, Failure

GENERATION = "g1"
NEXT_SEQ = 7
TIMEOUT_MS = 1_000
CREATED_MS = 10_000


def job(
    status: JobStatus = JobStatus.RUNNING,
    *,
    generation: str = GENERATION,
    last_active_at: int | None = None,
    error: str | None = None,
    final_event: str | None = None,
) -> SerializableJobData:
    return SerializableJobData(
        stream_id="s1",
        user_id="u1",
        status=status,
        created_at=CREATED_MS,
        generation_id=generation,
        last_active_at=last_active_at,
        error=error,
        final_event=final_event,
    )


def inquiry() -> SilenceInquiry:
    started = SilenceInquiry(
        generation=GENERATION, next_seq=NEXT_SEQ, producer_timeout_ms=TIMEOUT_MS
    )
    assert started.start() == ReadJob()
    return started


def test_an_unreadable_job_means_waiting() -> None:
    assert inquiry().job_unreadable() == KeepWaiting()


def test_a_live_producer_means_waiting_without_further_io() -> None:
    alive = job(last_active_at=CREATED_MS + 500)
    assert inquiry().job_read(alive, now_ms=CREATED_MS + 500 + TIMEOUT_MS) == KeepWaiting()


def test_a_vanished_job_ends_the_reader_after_the_lost_write_check() -> None:
    core = inquiry()
    assert core.job_read(None, now_ms=CREATED_MS) == CheckLostWrites()
    lost = Failure(seq=NEXT_SEQ, generation=GENERATION, message=STREAM_LOST)
    assert core.lost_writes_checked(None) == EndWith(lost)


def test_a_newer_turn_supersedes_the_reader_without_reading_the_log() -> None:
    core = inquiry()
    assert core.job_read(job(generation="g2"), now_ms=CREATED_MS) == CheckLostWrites()
    superseded = Failure(seq=NEXT_SEQ, generation=GENERATION, message=SUPERSEDED)
    assert core.lost_writes_checked(NEXT_SEQ - 1) == EndWith(superseded)


@pytest.mark.parametrize("last_lost", [NEXT_SEQ, NEXT_SEQ + 3])
def test_writes_lost_at_or_past_the_frontier_send_the_reader_back_to_the_log(
    last_lost: int,
) -> None:
    core = inquiry()
    assert core.job_read(None, now_ms=CREATED_MS) == CheckLostWrites()
    assert core.lost_writes_checked(last_lost) == Resync()


def test_a_silent_producer_is_fenced_before_anyone_is_told() -> None:
    core = inquiry()
    silent = job(last_active_at=CREATED_MS)
    assert core.job_read(silent, now_ms=CREATED_MS + TIMEOUT_MS + 1) == CheckLostWrites()
    assert core.lost_writes_checked(None) == FenceProducer(GENERATION)
    assert core.producer_fenced() == KeepWaiting()


def test_lost_writes_are_read_before_a_silent_producer_is_fenced() -> None:
    core = inquiry()
    assert core.job_read(job(), now_ms=CREATED_MS + TIMEOUT_MS + 1) == CheckLostWrites()
    assert core.lost_writes_checked(NEXT_SEQ) == Resync()


def test_the_producer_timeout_counts_from_creation_without_a_heartbeat() -> None:
    core = inquiry()
    assert core.job_read(job(), now_ms=CREATED_MS + TIMEOUT_MS) == KeepWaiting()
    core = inquiry()
    assert core.job_read(job(), now_ms=CREATED_MS + TIMEOUT_MS + 1) == CheckLostWrites()


def test_an_ended_turn_reads_the_log_tail_before_making_a_terminal_up() -> None:
    core = inquiry()
    ended = job(JobStatus.COMPLETE, final_event='{"text": "hi"}')
    assert core.job_read(ended, now_ms=CREATED_MS) == CheckLostWrites()
    assert core.lost_writes_checked(None) == ReadLogTail(NEXT_SEQ)
    done = Done(seq=NEXT_SEQ, generation=GENERATION, data={"text": "hi"})
    assert core.log_tail_read(found=False) == EndWith(done)


def test_a_row_in_the_log_tail_sends_the_reader_back_to_the_log() -> None:
    core = inquiry()
    assert core.job_read(job(JobStatus.ABORTED), now_ms=CREATED_MS) == CheckLostWrites()
    assert core.lost_writes_checked(None) == ReadLogTail(NEXT_SEQ)
    assert core.log_tail_read(found=True) == Resync()


def test_an_unreadable_log_tail_means_waiting() -> None:
    core = inquiry()
    failed = job(JobStatus.ERROR, error="boom")
    assert core.job_read(failed, now_ms=CREATED_MS) == CheckLostWrites()
    assert core.lost_writes_checked(None) == ReadLogTail(NEXT_SEQ)
    assert core.log_tail_unreadable() == KeepWaiting()


def test_a_failed_turn_ends_with_its_stored_error() -> None:
    core = inquiry()
    assert core.job_read(job(JobStatus.ERROR, error="boom"), now_ms=CREATED_MS) == (
        CheckLostWrites()
    )
    assert core.lost_writes_checked(None) == ReadLogTail(NEXT_SEQ)
    failure = Failure(seq=NEXT_SEQ, generation=GENERATION, message="boom")
    assert core.log_tail_read(found=False) == EndWith(failure)


def test_answers_out_of_turn_are_refused() -> None:
    core = SilenceInquiry(generation=GENERATION, next_seq=NEXT_SEQ, producer_timeout_ms=TIMEOUT_MS)
    with pytest.raises(RuntimeError, match="out of turn"):
        core.job_read(None, now_ms=CREATED_MS)
    core = inquiry()
    with pytest.raises(RuntimeError, match="out of turn"):
        core.producer_fenced()
    assert core.job_unreadable() == KeepWaiting()
    with pytest.raises(RuntimeError, match="out of turn"):
        core.start()
