"""The stream contract, run against every backend: memory, Redis and Redis Cluster.

Ports of the seed's regression tests (docs/librechat.md) plus the scenarios the
fixed design promises. Each test drives real replicas through the public manager API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
import trio.lowlevel
import trio.testing

from streamcheck.impl import (
    AbortOutcome,
    EventTooLarge,
    GenerationJobManager,
    JobStatus,
    StreamAccessDenied,
)
from streamcheck.impl._content import content_text
from streamcheck.impl._types import JobUpdate
from streamcheck.model import Chunk, Done, Failure, Gap, StreamEvent
from tests.backends import FAST, NEEDS_GLIDE, collect, delta, replicas, texts

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
    pytest.param("redis-glide", id="redis-glide", marks=[pytest.mark.redis, NEEDS_GLIDE]),
    pytest.param("cluster-glide", id="cluster-glide", marks=[pytest.mark.cluster, NEEDS_GLIDE]),
]


Backend = tuple[str, str, str]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    kind: str = request.param
    url = ""
    if kind.startswith("redis"):
        url = request.getfixturevalue("redis_url")
    elif kind.startswith("cluster"):
        url = request.getfixturevalue("redis_cluster_url")
    prefix = request.getfixturevalue("key_prefix") if kind != "memory" else ""
    return kind, url, prefix


@asynccontextmanager
async def two(backend: Backend) -> AsyncIterator[list[GenerationJobManager]]:
    kind, url, prefix = backend
    async with replicas(kind, 2, url=url, prefix=prefix) as managers:
        yield managers


def assert_clean(events: list[StreamEvent]) -> None:
    """Strictly increasing seqs, no gap, exactly one terminal at the end."""
    assert not [e for e in events if isinstance(e, Gap)], events
    seqs = [e.seq for e in events if not isinstance(e, Gap)]
    assert seqs == sorted(set(seqs)), seqs
    assert isinstance(events[-1], Done | Failure)
    assert sum(isinstance(e, Done | Failure) for e in events) == 1


async def test_events_emitted_before_subscribe_are_replayed_in_order(backend: Backend) -> None:
    async with two(backend) as (a, _b):
        await a.create_job("s1", "u1")
        for i in range(5):
            assert await a.emit_chunk("s1", delta(f"t{i}"))
        sub = await a.subscribe("s1", "u1")
        for i in range(5, 8):
            await a.emit_chunk("s1", delta(f"t{i}"))
        await a.emit_done("s1", {"final": True})
        await a.complete_job("s1")
        events = await collect(sub)
    assert texts(events) == [f"t{i}" for i in range(8)]
    assert_clean(events)


async def test_nothing_lost_across_the_subscribe_boundary(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        results: dict[str, list[StreamEvent]] = {}

        async def generate() -> None:
            for i in range(60):
                await a.emit_chunk("s1", delta(f"t{i}"))
                if i % 7 == 0:
                    await trio.lowlevel.checkpoint()
            await a.emit_done("s1", {"final": True})
            await a.complete_job("s1")

        async def attach(name: str, manager: GenerationJobManager, delay: int) -> None:
            for _ in range(delay):
                await trio.lowlevel.checkpoint()
            results[name] = await collect(await manager.subscribe("s1", "u1"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(generate)
            nursery.start_soon(attach, "same-early", a, 0)
            nursery.start_soon(attach, "same-late", a, 20)
            nursery.start_soon(attach, "other", b, 5)
            nursery.start_soon(attach, "other-late", b, 30)
    for name, events in results.items():
        assert texts(events) == [f"t{i}" for i in range(60)], name
        assert_clean(events)


async def test_concurrent_subscribers_share_readiness(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        subs = []

        async def sub_one() -> None:
            subs.append(await b.subscribe("s1", "u1"))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(sub_one)
        await a.emit_chunk("s1", delta("x"))
        await a.emit_done("s1", {"final": True})
        for sub in subs:
            events = await collect(sub)
            assert texts(events) == ["x"]
            assert_clean(events)


async def test_cross_replica_abort_stops_the_generator(backend: Backend) -> None:
    async with two(backend) as (a, b):
        job = await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("hello "))
        result = await b.abort_job("s1", "u1")
        assert result.outcome is AbortOutcome.ABORTED
        with trio.fail_after(5):
            await job.aborted.wait()
        assert not await a.emit_chunk("s1", delta("ignored"))
        await a.complete_job("s1")
        events = await collect(sub)
        assert texts(events) == ["hello "]
        assert isinstance(events[-1], Done)
        assert events[-1].data["aborted"] is True  # type: ignore[index,call-overload]
        assert_clean(events)
        assert content_text(result.content) == "hello "
        assert (await b.abort_job("s1", "u1")).outcome is AbortOutcome.ALREADY_TERMINAL


async def test_abort_reaches_the_generator_after_its_subscribers_left(backend: Backend) -> None:
    # Regression (docs/librechat.md, bug 17): the last unsubscribe used to drop the abort channel.
    async with two(backend) as (a, b):
        job = await a.create_job("s1", "u1")
        sub = await a.subscribe("s1", "u1")
        await sub.aclose()
        await b.abort_job("s1", "u1")
        with trio.fail_after(5):
            await job.aborted.wait()


async def test_late_subscriber_gets_the_stored_error(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        await a.emit_error("s1", "input too long")
        await a.complete_job("s1", error="input too long")
        job = await b.get_job("s1")
        assert job is not None and job.status is JobStatus.ERROR
        events = await collect(await b.subscribe("s1", "u1"))
        assert len(events) == 1 and isinstance(events[0], Failure)
        assert (events[0].generation, events[0].message) == (job.generation_id, "input too long")


async def test_three_reconnect_cycles_lose_nothing(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        expected: list[str] = []
        seen_text = ""
        n = 0
        for cycle, replica in enumerate([b, a, b]):
            state, sub = await replica.resume("s1", "u1")
            snapshot = content_text(state.aggregated_content)
            assert snapshot == "".join(expected), (cycle, snapshot)
            for _ in range(4):
                text = f"c{n} "
                n += 1
                expected.append(text)
                await a.emit_chunk("s1", delta(text))
            got: list[str] = []
            with trio.fail_after(5):
                while len(got) < 4:
                    event = await sub.receive()
                    assert isinstance(event, Chunk), event
                    got += texts([event])
            assert got == expected[-4:]
            seen_text = snapshot + "".join(got)
            await sub.aclose()
        assert seen_text == "".join(expected)
        await a.emit_done("s1", {"final": True})


async def test_new_turn_on_a_reused_stream_id_gets_none_of_the_old_turn(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        for i in range(3):
            await a.emit_chunk("s1", delta(f"old{i}"))
        await a.emit_done("s1", {"final": 1})
        await a.complete_job("s1")
        lingering = await b.subscribe("s1", "u1")
        first = await collect(lingering)
        assert texts(first) == ["old0", "old1", "old2"]
        await b.create_job("s1", "u1")
        sub = await a.subscribe("s1", "u1")
        for i in range(2):
            await b.emit_chunk("s1", delta(f"new{i}"))
        await b.emit_done("s1", {"final": 2})
        events = await collect(sub)
        assert texts(events) == ["new0", "new1"]
        assert_clean(events)
        assert min(e.seq for e in events if not isinstance(e, Gap)) > max(
            e.seq for e in first if not isinstance(e, Gap)
        )


async def test_old_turn_is_fenced_after_replacement(backend: Backend) -> None:
    async with two(backend) as (a, b):
        old = await a.create_job("s1", "u1")
        await b.create_job("s1", "u1")
        assert not await a.emit_chunk("s1", delta("stale"))
        assert old.is_aborted


async def test_a_dropped_pubsub_message_is_repaired_from_the_log(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        transport = b.transport
        original = transport.deliver
        dropped: list[Chunk] = []

        def lossy(stream_id: str, message: object) -> None:
            if not dropped and isinstance(message, Chunk) and message.seq >= 0:
                dropped.append(message)
                return
            original(stream_id, message)  # type: ignore[arg-type]

        transport.deliver = lossy  # type: ignore[method-assign]
        for i in range(4):
            await a.emit_chunk("s1", delta(f"t{i}"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    assert dropped
    assert texts(events) == [f"t{i}" for i in range(4)]
    assert_clean(events)


async def test_lost_terminal_is_found_by_the_idle_probe(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        original = b.transport.deliver

        def drop_terminals(stream_id: str, message: object) -> None:
            if not isinstance(message, Done):
                original(stream_id, message)  # type: ignore[arg-type]

        b.transport.deliver = drop_terminals  # type: ignore[method-assign]
        await a.emit_chunk("s1", delta("x"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    assert texts(events) == ["x"]
    assert isinstance(events[-1], Done)


async def test_other_users_and_missing_streams_look_the_same(backend: Backend) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "owner")
        for manager in (a, b):
            for stream in ("s1", "nope"):
                with pytest.raises(StreamAccessDenied, match=r"^stream not found or not yours$"):
                    await manager.subscribe(stream, "intruder")
                with pytest.raises(StreamAccessDenied):
                    await manager.resume(stream, "intruder")
                with pytest.raises(StreamAccessDenied):
                    await manager.abort_job(stream, "intruder")


@pytest.mark.parametrize(
    ("stream_id", "message"),
    [
        ("", r"^stream id must not be empty$"),
        ("x" * 257, r"^stream id must be at most 256 characters, got 257$"),
        ("a{b}", r"^stream id must not contain '\{' or '\}'"),
        ("a\nb", r"^stream id must not contain control characters$"),
    ],
)
async def test_invalid_stream_ids_are_rejected(
    backend: Backend, stream_id: str, message: str
) -> None:
    async with two(backend) as (a, _b):
        with pytest.raises(ValueError, match=message):
            await a.create_job(stream_id, "u1")
        with pytest.raises(ValueError, match=message):
            await a.subscribe(stream_id, "u1")


async def test_late_subscriber_to_a_finished_turn_gets_everything_and_the_final_event(
    backend: Backend,
) -> None:
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        await a.emit_chunk("s1", delta("all "))
        await a.emit_chunk("s1", delta("done"))
        await a.emit_done("s1", {"final": "yes"})
        await a.complete_job("s1")
        events = await collect(await b.subscribe("s1", "u1"))
        assert texts(events) == ["all ", "done"]
        assert isinstance(events[-1], Done) and events[-1].data == {"final": "yes"}
        assert_clean(events)


async def test_all_subscribers_left_fires_on_every_disconnect(backend: Backend) -> None:
    # Regression (docs/librechat.md bug 3): the callback used to be lost after the first disconnect.
    async with two(backend) as (a, _b):
        await a.create_job("s1", "u1")
        fired: list[int] = []
        a.transport.on_all_subscribers_left("s1", lambda: fired.append(1))
        for cycle in range(3):
            first = await a.subscribe("s1", "u1")
            second = await a.subscribe("s1", "u1")
            assert a.transport.get_subscriber_count("s1") == 2
            await first.aclose()
            assert len(fired) == cycle
            await second.aclose()
            assert len(fired) == cycle + 1


async def test_early_buffer_overflow_is_recovered_from_the_log(backend: Backend) -> None:
    kind, url, prefix = backend
    settings = replace(FAST, early_buffer_max_events=3)
    async with replicas(kind, 1, url=url, prefix=prefix, settings=settings) as (a,):
        await a.create_job("s1", "u1")
        for i in range(10):
            await a.emit_chunk("s1", delta(f"t{i}"))
        sub = await a.subscribe("s1", "u1")
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    assert texts(events) == [f"t{i}" for i in range(10)]
    assert_clean(events)


async def test_oversized_events_are_refused_before_publishing(backend: Backend) -> None:
    kind, url, prefix = backend
    settings = replace(FAST, max_event_bytes=1000)
    async with replicas(kind, 1, url=url, prefix=prefix, settings=settings) as (a,):
        await a.create_job("s1", "u1")
        sub = await a.subscribe("s1", "u1")
        with pytest.raises(EventTooLarge, match=r"over the 1000-byte limit"):
            await a.emit_chunk("s1", delta("x" * 2000))
        await a.emit_chunk("s1", delta("small"))
        await a.emit_done("s1", {"final": True})
        assert texts(await collect(sub)) == ["small"]


async def test_generator_finishing_after_a_remote_abort_is_not_an_error(backend: Backend) -> None:
    # Found by the simulation: the generator's done lost the race to an abort from
    # another replica, and complete_job then raised IllegalTransition.
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        assert (await b.abort_job("s1", "u1")).outcome is AbortOutcome.ABORTED
        assert await a.emit_done("s1", {"final": True}) is None
        await a.complete_job("s1")
        job = await b.get_job("s1")
        assert job is not None and job.status is JobStatus.ABORTED


async def test_a_late_producers_terminal_is_refused_once_a_reader_failed_its_job(
    backend: Backend,
) -> None:
    # Found by the simulation (emit_after_end): a reader judged the silent producer lost
    # and failed its job, then the slow producer's done was published after all, so two
    # readers of one turn could end on different terminals.
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        job = await b.get_job("s1")
        assert job is not None
        failed = JobUpdate(status=JobStatus.ERROR, error="producer lost")
        await b.job_store.update_job("s1", failed, expected_generation=job.generation_id)
        assert await a.emit_done("s1", {"final": True}) is None
        assert await a.emit_error("s1", "boom") is None
        runtime = a.local_job("s1")
        assert runtime is not None and runtime.is_aborted


async def test_an_abort_whose_status_write_loses_to_the_generators_completion(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the simulation: the generator's own completion recorded the turn's status
    # between the abort's publish of its Done and the abort's status write, which then
    # raised IllegalTransition out of abort_job. The abort's Done is the terminal readers
    # received, and the job has ended either way.
    async with two(backend) as (a, b):
        await a.create_job("s1", "u1")
        original = b.job_store.update_job
        raced = False

        async def completion_first(
            stream_id: str, update: JobUpdate, *, expected_generation: str | None = None
        ) -> bool:
            nonlocal raced
            if not raced and update.status is JobStatus.ABORTED:
                raced = True  # the generator, not yet reached by the abort, completes
                await original(
                    stream_id,
                    JobUpdate(status=JobStatus.COMPLETE),
                    expected_generation=expected_generation,
                )
            return await original(stream_id, update, expected_generation=expected_generation)

        monkeypatch.setattr(b.job_store, "update_job", completion_first)
        result = await b.abort_job("s1", "u1")
        assert raced
        assert result.outcome is AbortOutcome.ABORTED
        job = await b.get_job("s1")
        assert job is not None and job.status.is_terminal


async def test_memory_backend_forgets_the_log_of_an_expired_job() -> None:
    from streamcheck.impl import MemoryBackend, ReplicaSettings, open_replica
    from streamcheck.impl._seams import ManualWallClock

    clock = ManualWallClock()
    backend = MemoryBackend(wall_clock=clock, settings=ReplicaSettings(completed_ttl_s=300))
    async with open_replica(backend) as manager:
        await manager.create_job("s1", "u1")
        await manager.emit_chunk("s1", delta("x"))
        await manager.emit_done("s1", {"final": True})
        await manager.complete_job("s1")
        assert backend.hub.log_length("s1") == 2
        clock.advance(301_000)
        await manager.cleanup()
        assert await manager.get_job("s1") is None
        assert backend.hub.log_length("s1") == 0
        assert backend.hub.counter_now("s1") == 2  # the counter survives, as in Redis


async def test_a_stopped_stream_actor_refuses_requests_instead_of_hanging() -> None:
    """Found by the simulation: a client's shielded detach, sent while its replica shut
    down, waited for ever on the actor that had just stopped."""
    from streamcheck.impl import MemoryBackend, StreamActorStopped, open_replica

    async with open_replica(MemoryBackend()) as manager:
        await manager.create_job("s1", "u1")
        subscription = await manager.subscribe("s1", "u1")
        actor = manager.transport._actor("s1")
        manager.transport._actors["s1"][1].cancel()  # the stream's actor task ends
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            await subscription.aclose()  # detach: nothing left to wait for
            assert await actor.detach(99) == 0
            with pytest.raises(StreamActorStopped, match="s1"):
                await actor.audit()
