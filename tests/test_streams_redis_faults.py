"""Redis misbehaving under a live stream: dropped pub/sub, lost writes, garbage payloads.

Each test starts its own redis-server on a free loopback port (stopped by pid), so
killing connections or rewinding keys never disturbs another test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from streamcheck.impl import Keys
from streamcheck.impl.transport import Published
from streamcheck.impl.transport._redis_bus import FAILOVER_SKIP
from streamcheck.model import Chunk, Done, Failure, Gap, GapReason
from tests.backends import NEEDS_GLIDE, collect, delta, replicas, texts
from tests.redis_support import RedisServer, have_redis_binaries, open_redis, resp_call

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH"),
]


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["redis", pytest.param("redis-glide", marks=NEEDS_GLIDE)])
def kind(request: pytest.FixtureRequest) -> str:
    """The replicas' backend kind: Redis on each client (tests/backends.py)."""
    value: str = request.param
    return value


async def test_killed_pubsub_connection_is_rebuilt_and_the_gap_filled_from_the_log(
    private_redis: RedisServer,
    kind: str,
) -> None:
    async with replicas(kind, 2, url=private_redis.url) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        for i in range(5):
            await a.emit_chunk("s1", delta(f"a{i}"))
        killed = resp_call(private_redis.port, "CLIENT", "KILL", "TYPE", "pubsub")
        assert isinstance(killed, int) and killed >= 1
        for i in range(5):
            await a.emit_chunk("s1", delta(f"b{i}"))
            await trio.sleep(0.01)
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    assert texts(events) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    assert not [e for e in events if isinstance(e, Gap)]
    assert isinstance(events[-1], Done)


async def test_counter_going_backwards_never_reuses_a_seq(
    private_redis: RedisServer, kind: str
) -> None:
    # Simulates a failover that lost the last INCRs: the counter is rewound by hand.
    async with replicas(kind, 2, url=private_redis.url) as (a, b):
        job = await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        for i in range(5):
            await a.emit_chunk("s1", delta(f"a{i}"))
        resp_call(private_redis.port, "SET", Keys().seq("s1"), str(job.start_seq + 2))
        for i in range(3):
            await a.emit_chunk("s1", delta(f"b{i}"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
    seqs = [e.seq for e in events if isinstance(e, Chunk | Done)]
    assert seqs == sorted(set(seqs))
    assert texts(events) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(3)]


async def test_failover_to_a_lagging_replica_is_a_gap_and_reuses_no_seq(
    private_redis: RedisServer,
    kind: str,
) -> None:
    # What a promoted replica that lagged looks like to the next writer: its counter and
    # log miss the last chunk, and its run id is not the one stored beside the counter.
    # The next writer (replica b) never saw the lost chunk, so only the run id tells it.
    keys, port = Keys(), private_redis.port
    async with replicas(kind, 2, url=private_redis.url) as (a, b):
        await a.create_job("s1", "u1")
        await a.emit_chunk("s1", delta("kept"))
        lost = await a.emit_chunk("s1", delta("lost"))
        assert isinstance(lost, Published)
        resp_call(port, "XDEL", keys.chunks("s1"), f"{lost.seq}-1")
        resp_call(port, "SET", keys.seq("s1"), str(lost.seq))
        resp_call(port, "SET", keys.seq_epoch("s1"), "f" * 40)
        await b.abort_job("s1", "u1")
        events = await collect(await b.subscribe("s1", "u1"))
    assert texts(events) == ["kept"]
    gaps = [e for e in events if isinstance(e, Gap)]
    done = events[-1]
    assert isinstance(done, Done) and done.seq >= lost.seq + FAILOVER_SKIP
    # b never saw the lost chunk: to b it is only possibly lost, like every seq it
    # skipped.
    assert [(g.first_seq, g.last_seq, g.reason) for g in gaps] == [
        (lost.seq, done.seq - 1, GapReason.POSSIBLY_LOST)
    ]


async def test_malformed_channel_payloads_are_counted_and_dropped(
    private_redis: RedisServer,
    kind: str,
) -> None:
    async with replicas(kind, 2, url=private_redis.url) as (a, b):
        await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("before "))
        async with open_redis(private_redis.url) as raw:
            channel = Keys.channel("s1")
            for garbage in (
                "not json",
                '{"type": "chunk", "seq": "x", "generationId": "g"}',
                '{"type": "nope", "seq": 1, "generationId": "g"}',
                '{"type": "chunk", "seq": 1}',
            ):
                assert await raw.publish(channel, garbage) >= 1
        await a.emit_chunk("s1", delta("after"))
        await a.emit_done("s1", {"final": True})
        events = await collect(sub)
        assert texts(events) == ["before ", "after"]
        assert b.transport.statistics().malformed_dropped == 4


async def test_a_vanished_job_ends_its_subscribers_instead_of_hanging(
    private_redis: RedisServer,
    kind: str,
) -> None:
    # Redis restarted without persistence: the job, log and counter are gone.
    async with replicas(kind, 2, url=private_redis.url) as (a, b):
        job = await a.create_job("s1", "u1")
        sub = await b.subscribe("s1", "u1")
        await a.emit_chunk("s1", delta("x"))
        resp_call(private_redis.port, "FLUSHALL")
        assert not await a.emit_chunk("s1", delta("y"))
        assert job.is_aborted
        events = await collect(sub)
    assert texts(events) == ["x"]
    assert isinstance(events[-1], Failure)
