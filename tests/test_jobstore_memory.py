"""MemoryJobStore: capacity, retention, reaping, the user index and local content state.

Behaviour shared with the Redis store is in test_jobstore_contract.py; these tests cover
what only the in-memory store does (eviction, the after-complete TTL, stored parts).
"""

from __future__ import annotations

import gc
import logging
import re

import pytest

from streamcheck.impl._errors import IllegalTransition
from streamcheck.impl._seams import ManualWallClock
from streamcheck.impl._status import JobStatus
from streamcheck.impl._types import JobUpdate, UsageMetadata, UserMessage
from streamcheck.impl.jobstore import MemoryJobStore, MemoryJobStoreStats
from streamcheck.model import JSONValue

MINUTE = 60_000


class Graph:
    """A stand-in for the live generation graph."""

    def __init__(self, parts: list[JSONValue], steps: list[JSONValue]) -> None:
        self.parts = parts
        self.steps = steps

    def get_content_parts(self) -> list[JSONValue]:
        return list(self.parts)

    def get_run_steps(self) -> list[JSONValue]:
        return list(self.steps)


def make_store(
    clock: ManualWallClock,
    *,
    max_jobs: int = 1000,
    ttl_after_complete_ms: int = 0,
    stale_job_timeout_ms: int = 20 * MINUTE,
) -> MemoryJobStore:
    return MemoryJobStore(
        wall_clock=clock,
        max_jobs=max_jobs,
        ttl_after_complete_ms=ttl_after_complete_ms,
        stale_job_timeout_ms=stale_job_timeout_ms,
    )


async def test_create_at_capacity_evicts_the_oldest_job(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualWallClock()
    store = make_store(clock, max_jobs=2)
    await store.create_job("b", "u", generation_id="gb")
    clock.advance(1)
    await store.create_job("a", "u", generation_id="ga")
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="streamcheck.impl.jobstore._memory"):
        await store.create_job("c", "u", generation_id="gc")
    assert not await store.has_job("b")
    assert await store.has_job("a")
    assert await store.has_job("c")
    assert "evicting stream 'b'" in caplog.text
    assert store.statistics().evicted_total == 1


async def test_replacing_a_stream_at_capacity_evicts_nothing() -> None:
    clock = ManualWallClock()
    store = make_store(clock, max_jobs=2)
    await store.create_job("a", "u", generation_id="g1")
    await store.create_job("b", "u", generation_id="g2")
    await store.create_job("a", "u", generation_id="g3")
    assert await store.get_job_count() == 2
    assert store.statistics().evicted_total == 0


async def test_terminal_job_is_kept_until_ttl_after_complete_elapses() -> None:
    clock = ManualWallClock()
    store = make_store(clock, ttl_after_complete_ms=1000)
    await store.create_job("s", "u", generation_id="g")
    await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE, completed_at=clock.now_ms()))
    clock.advance(999)
    assert await store.cleanup() == 0
    assert await store.has_job("s")
    clock.advance(1)
    assert await store.cleanup() == 1
    assert not await store.has_job("s")
    assert store.statistics().expired_total == 1
    assert await store.take_reaped() == []  # expiry is not reaping


async def test_ttl_zero_removes_terminal_job_at_next_cleanup_but_keeps_running_ones() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    await store.create_job("done", "u", generation_id="g1")
    await store.create_job("live", "u", generation_id="g2")
    await store.update_job("done", JobUpdate(status=JobStatus.ERROR, error="boom"))
    assert await store.cleanup() == 1
    assert not await store.has_job("done")
    assert await store.has_job("live")


async def test_terminal_update_without_completed_at_is_stamped_so_it_can_expire() -> None:
    # A job made terminal without completed_at would otherwise never match the TTL rule.
    clock = ManualWallClock()
    store = make_store(clock, ttl_after_complete_ms=5000)
    await store.create_job("s", "u", generation_id="g")
    clock.advance(100)
    await store.update_job("s", JobUpdate(status=JobStatus.ABORTED))
    job = await store.get_job("s")
    assert job is not None
    assert job.completed_at == clock.now_ms()


async def test_cleanup_reaps_idle_running_job_but_not_a_recently_active_one() -> None:
    clock = ManualWallClock()
    store = make_store(clock, stale_job_timeout_ms=20 * MINUTE)
    await store.create_job("idle", "u", generation_id="g-idle")
    await store.create_job("busy", "u", generation_id="g-busy")
    clock.advance(15 * MINUTE)
    await store.record_activity("busy", "g-busy")
    clock.advance(5 * MINUTE)
    assert await store.cleanup() == 0  # exactly 20 minutes idle is not "longer than"
    clock.advance(1)
    assert await store.cleanup() == 1
    assert not await store.has_job("idle")
    assert await store.has_job("busy")
    assert await store.take_reaped() == [("idle", "g-idle")]
    assert await store.take_reaped() == []
    assert store.statistics().reaped_total == 1


async def test_activity_of_a_predecessor_generation_does_not_keep_the_replacement_alive() -> None:
    clock = ManualWallClock()
    store = make_store(clock, stale_job_timeout_ms=MINUTE)
    await store.create_job("s", "u", generation_id="old")
    await store.create_job("s", "u", generation_id="new")
    clock.advance(MINUTE + 1)
    await store.record_activity("s", "old")
    assert await store.cleanup() == 1
    assert await store.take_reaped() == [("s", "new")]


async def test_stale_timeout_zero_disables_reaping() -> None:
    clock = ManualWallClock()
    store = make_store(clock, stale_job_timeout_ms=0)
    await store.create_job("s", "u", generation_id="g")
    clock.advance(10**9)
    assert await store.cleanup() == 0
    assert await store.has_job("s")


async def test_user_index_drops_terminal_ids_and_empty_sets() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    await store.create_job("a", "u", generation_id="g1")
    await store.create_job("b", "u", generation_id="g2")
    await store.update_job("a", JobUpdate(status=JobStatus.COMPLETE))
    assert await store.get_active_job_ids_by_user("u") == ["b"]
    await store.update_job("b", JobUpdate(status=JobStatus.ERROR))
    assert await store.get_active_job_ids_by_user("u") == []
    assert store.statistics().indexed_users == 0


async def test_update_is_compare_and_set_on_the_generation() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    assert not await store.update_job("ghost", JobUpdate(sender="AI"))
    assert not await store.has_job("ghost")  # a missing job is never resurrected
    await store.create_job("s", "u", generation_id="g1")
    assert not await store.update_job("s", JobUpdate(sender="X"), expected_generation="g0")
    assert await store.update_job("s", JobUpdate(sender="AI"), expected_generation="g1")
    job = await store.get_job("s")
    assert job is not None
    assert job.sender == "AI"


async def test_illegal_transition_raises_and_changes_nothing() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    await store.create_job("s", "u", generation_id="g")
    await store.update_job("s", JobUpdate(status=JobStatus.COMPLETE))
    message = "can't move stream 's' from status 'complete' to 'aborted'"
    with pytest.raises(IllegalTransition, match=f"^{re.escape(message)}$"):
        await store.update_job("s", JobUpdate(status=JobStatus.ABORTED, error="late"))
    job = await store.get_job("s")
    assert job is not None
    assert (job.status, job.error) == (JobStatus.COMPLETE, None)


async def test_create_replaces_the_previous_turn_wholesale() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    await store.create_job("s", "u1", "conv", generation_id="g1")
    await store.update_job(
        "s",
        JobUpdate(
            status=JobStatus.ERROR,
            error="boom",
            sender="AI",
            sync_sent=True,
            prompt_tokens=12,
            user_message=UserMessage(message_id="m1", text="hi"),
        ),
    )
    store.set_collected_usage("s", [UsageMetadata(input_tokens=1, output_tokens=2)])
    store.set_content_parts("s", [{"type": "text", "text": "old"}])
    clock.advance(5)
    new = await store.create_job("s", "u2", generation_id="g2")
    assert new == await store.get_job("s")
    assert (new.status, new.user_id, new.generation_id) == (JobStatus.RUNNING, "u2", "g2")
    assert new.created_at == clock.now_ms()
    assert (new.error, new.sender, new.prompt_tokens, new.user_message) == (None,) * 4
    assert new.conversation_id is None
    assert new.sync_sent is False
    assert store.get_collected_usage("s") == []
    assert await store.get_content_parts("s") is None
    assert await store.get_active_job_ids_by_user("u1") == []
    assert await store.get_active_job_ids_by_user("u2") == ["s"]


async def test_start_seq_comes_from_the_transport_counter_callback() -> None:
    counters = {"s": 41}
    store = MemoryJobStore(wall_clock=ManualWallClock(), start_seq_for=counters.__getitem__)
    job = await store.create_job("s", "u", generation_id="g")
    assert job.start_seq == 41


async def test_content_falls_back_to_stored_parts_once_the_graph_is_collected() -> None:
    store = make_store(ManualWallClock())
    assert await store.get_content_parts("s") is None
    assert await store.get_run_steps("s") == []
    graph = Graph([{"type": "text", "text": "live"}], [{"id": "step1"}])
    store.set_graph("s", graph)
    store.set_content_parts("s", [{"type": "text", "text": "stored"}])
    await store.save_run_steps("s", [{"id": "saved"}])
    assert await store.get_content_parts("s") == [{"type": "text", "text": "live"}]
    assert await store.get_run_steps("s") == [{"id": "step1"}]
    graph.parts = []  # a graph without parts yet defers to the stored ones
    assert await store.get_content_parts("s") == [{"type": "text", "text": "stored"}]
    del graph
    gc.collect()
    assert await store.get_content_parts("s") == [{"type": "text", "text": "stored"}]
    assert await store.get_run_steps("s") == [{"id": "saved"}]
    await store.clear_content_state("s")
    assert await store.get_content_parts("s") is None
    assert await store.get_run_steps("s") == []


async def test_statistics_and_repr_show_the_counts() -> None:
    clock = ManualWallClock()
    store = make_store(clock)
    await store.create_job("a", "u", generation_id="g1")
    await store.create_job("b", "u", generation_id="g2")
    await store.update_job("b", JobUpdate(status=JobStatus.COMPLETE))
    assert store.statistics() == MemoryJobStoreStats(
        jobs=2,
        running=1,
        terminal=1,
        indexed_users=1,
        content_states=0,
        evicted_total=0,
        expired_total=0,
        reaped_total=0,
        pending_reaped=0,
    )
    assert repr(store) == (
        "<MemoryJobStore jobs=2 running=1 terminal=1 max_jobs=1000 evicted=0 expired=0 "
        "reaped=0 pending_reaped=0>"
    )
    await store.destroy()
    assert store.statistics().jobs == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_jobs": 0}, "max_jobs must be at least 1, got 0"),
        ({"ttl_after_complete_ms": -1}, "ttl_after_complete_ms must be >= 0, got -1"),
        (
            {"stale_job_timeout_ms": -5},
            "stale_job_timeout_ms must be >= 0 (0 disables), got -5",
        ),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make_store(ManualWallClock(), **options)
