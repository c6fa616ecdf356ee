"""Coalesced emits: chunks queued without awaiting, published in batches, on every backend.

Each queued chunk still gets its own seq and chunk-log entry and is fenced on its own;
``emit_done`` is published after every chunk queued before it; a full queue makes the
next ``submit_chunk`` wait; readers receive a batch's events one by one, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
import trio
import trio.testing

from streamcheck.impl import JobStatus, QueuedChunk, StopReason
from streamcheck.impl._types import JobUpdate
from streamcheck.impl.seams import LostWrites
from streamcheck.impl.transport import EventKind, OutgoingEvent, Published, PublishOutcome
from streamcheck.impl.transport._envelope import MalformedPayload, decode
from streamcheck.model import Chunk, Done, JSONValue
from tests.backends import FAST, NEEDS_GLIDE, collect, delta, replicas, texts

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("redis-glide", id="redis-glide", marks=[pytest.mark.redis, NEEDS_GLIDE]),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
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


@dataclass(frozen=True)
class _Chunk:
    """An event as a bus publishes it (the actor's queued emits are these)."""

    kind: EventKind = EventKind.CHUNK
    body: JSONValue = "x"
    encoded: str = '"x"'
    by_abort: bool = False


async def test_queued_chunks_arrive_in_order_each_with_its_seq_and_log_entry(
    backend: Backend,
) -> None:
    kind, url, prefix = backend
    async with replicas(kind, 2, url=url, prefix=prefix) as (a, b):
        job = await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        queued = [await a.submit_chunk("s1", delta(f"t{i}")) for i in range(300)]
        done = await a.emit_done("s1", {"final": True})
        # The done is answered after every chunk queued before it.
        assert all(q.answered for q in queued)
        receipts = [q.result() for q in queued]
        assert all(isinstance(r, Published) for r in receipts)
        seqs = [r.seq for r in receipts if r is not None]
        assert seqs == list(range(job.start_seq, job.start_seq + 300))
        assert done is not None and done.seq == seqs[-1] + 1
        await a.complete_job("s1")
        events = await collect(sub)
        logged = await b.transport.bus.read_log("s1", from_seq=job.start_seq, count=1000)
    assert texts(events) == [f"t{i}" for i in range(300)]
    assert [e.seq for e in events if isinstance(e, Chunk | Done)] == [*seqs, done.seq]
    assert [row.seq for row in logged] == [*seqs, done.seq]


async def test_queued_chunks_of_an_ended_turn_are_refused_one_by_one(backend: Backend) -> None:
    kind, url, prefix = backend
    async with replicas(kind, 2, url=url, prefix=prefix) as (a, b):
        await a.create_job("s1", "u1")
        stored = await b.get_job("s1")
        assert stored is not None
        failed = JobUpdate(status=JobStatus.ERROR, error="producer lost")
        await b.job_store.update_job("s1", failed, expected_generation=stored.generation_id)
        queued = [await a.submit_chunk("s1", delta(f"t{i}")) for i in range(5)]
        assert [await q for q in queued] == [None] * 5
        runtime = a.local_job("s1")
        assert runtime is not None and runtime.stop_reason is StopReason.TURN_ENDED
        # Stopped, the generator's next chunks are dropped without reaching the actor.
        assert await (await a.submit_chunk("s1", delta("late"))) is None


async def test_a_chunk_queued_behind_the_done_is_refused_by_the_fence(backend: Backend) -> None:
    kind, url, prefix = backend
    async with replicas(kind, 1, url=url, prefix=prefix) as (a,):
        job = await a.create_job("s1", "u1")
        transport = a.transport
        first = await a.submit_chunk("s1", delta("before"))
        done_task: list[object] = []

        async def finish() -> None:
            # The transport's own emit: queued at once (the manager's stores the final
            # event on the job first), so the next chunk is queued behind it.
            final: JSONValue = {"final": True}
            done_task.append(await transport.emit_done("s1", job.generation, final))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish)
            await trio.testing.wait_all_tasks_blocked(cushion=0.0)
            late = await a.submit_chunk("s1", delta("after"))
        assert isinstance(await first, Published)
        assert isinstance(done_task[0], Published)
        assert await late is None
        sub = await transport.subscribe("s1", generation=job.generation, start_seq=job.start_seq)
        events = await collect(sub)
    assert texts(events) == ["before"]


async def test_a_full_queue_makes_the_next_submit_wait() -> None:
    settings = replace(FAST, max_in_flight_emits=4)
    async with replicas("memory", 1, settings=settings) as (a,):
        await a.create_job("s1", "u1")
        await trio.testing.wait_all_tasks_blocked()
        bus = a.transport.bus
        publish_batch = bus.publish_batch
        gate = trio.Event()
        batches: list[int] = []

        async def gated(
            stream_id: str, *, generation: str, events: Sequence[OutgoingEvent], floor: int
        ) -> list[PublishOutcome]:
            await gate.wait()
            batches.append(len(events))
            return await publish_batch(stream_id, generation=generation, events=events, floor=floor)

        bus.publish_batch = gated  # type: ignore[method-assign]
        queued: list[QueuedChunk] = []

        async def generator() -> None:
            for i in range(6):
                queued.append(await a.submit_chunk("s1", delta(f"t{i}")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(generator)
            await trio.testing.wait_all_tasks_blocked()
            assert len(queued) == 4  # the fifth waits for room
            gate.set()
        receipts = [await q for q in queued]
    assert [r.seq for r in receipts if r is not None] == list(range(6))
    assert batches[0] == 4


def test_a_batch_message_decodes_to_its_events_and_a_malformed_one_is_refused() -> None:
    one = '{"type":"chunk","seq":%d,"generationId":"g","data":{"n":%d}}'
    events = decode("[" + ",".join(one % (s, s) for s in (4, 5, 6)) + "]")
    assert events == tuple(Chunk(seq=s, generation="g", data={"n": s}) for s in (4, 5, 6))
    for bad in (
        "[]",
        "[" + one % (5, 5) + "," + one % (4, 4) + "]",  # out of order
        '[{"type":"abort","generationId":"g"}]',
        "[" + one % (4, 4) + ',{"type":"chunk","seq":5,"generationId":"h","data":1}]',
        "[[" + one % (4, 4) + "]]",
    ):
        with pytest.raises(MalformedPayload):
            decode(bad)


async def test_a_claimed_turn_refuses_its_queued_chunks_and_publishes_the_aborts_done(
    backend: Backend,
) -> None:
    kind, url, prefix = backend
    async with replicas(kind, 1, url=url, prefix=prefix) as (a,):
        job = await a.create_job("s1", "u1")
        transport = a.transport
        first = await a.submit_chunk("s1", delta("before the claim"))
        assert isinstance(await first, Published)
        # The claim only (no signal): the generator still queues, the fence refuses.
        assert await transport.claim_abort("s1", job.generation) is None
        refused = [await a.submit_chunk("s1", delta(f"late {i}")) for i in range(3)]
        final: JSONValue = {"final": True, "aborted": True}
        done = await transport.emit_done("s1", job.generation, final, by_abort=True)
        assert [await q for q in refused] == [None] * 3
        assert job.stop_reason is StopReason.ABORTED
        assert isinstance(done, Published)
        rows = await transport.bus.read_log("s1", from_seq=job.start_seq, count=10)
    assert [type(row) for row in rows] == [Chunk, Done]


async def test_a_batch_publishes_at_the_floor_and_logs_the_seqs_below_it_as_lost(
    backend: Backend,
) -> None:
    kind, url, prefix = backend
    async with replicas(kind, 1, url=url, prefix=prefix) as (a,):
        job = await a.create_job("s1", "u1")
        bus = a.transport.bus
        floor = job.start_seq + 10  # as if this replica had seen seqs Redis lost
        outcomes = await bus.publish_batch(
            "s1", generation=job.generation, events=[_Chunk(), _Chunk(), _Chunk()], floor=floor
        )
        rows = await bus.read_log("s1", from_seq=job.start_seq, count=10)
    assert outcomes == [
        Published(seq=floor, counter_regressed=True),
        Published(seq=floor + 1),
        Published(seq=floor + 2),
    ]
    assert isinstance(rows[0], LostWrites) and rows[0].first_seq == job.start_seq
    assert [row.seq for row in rows[1:]] == [floor, floor + 1, floor + 2]
