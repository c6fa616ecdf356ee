"""Messages on a stream's channel that its publish script did not send (issue 17, part 1).

A foreign client publishes on ``stream:{id}:events`` of a real Redis while a turn
streams; readers must see exactly the turn's events and the counter must not move.
Stream ids are unique per test: channels carry no key prefix on the shared server.
"""

from __future__ import annotations

import json
import uuid

import pytest
import trio

from streamcheck.impl import Keys, ReplicaParts, StreamActorStopped
from streamcheck.impl.jobstore._lua import SET_EX
from streamcheck.impl.transport import Published
from streamcheck.impl.transport._actor import ACTOR_FAILED, LocalSubscriber, StreamActor
from streamcheck.impl.transport._commands import Attach, Command
from streamcheck.model import Chunk, Done, Failure
from tests.backends import collect, delta, replicas, texts
from tests.redis_support import open_redis

FORGERIES = [
    "not json",
    '{"type": "chunk", "seq": "1", "generationId": "x"}',
    '{"type": "chunk", "seq": -4, "generationId": "x"}',
    '{"type": "chunk", "seq": 1e300, "generationId": "x"}',
    '{"type": "chunk", "seq": 100000000000000, "generationId": "forged"}',
    '{"type": "chunk", "seq": 1, "generationId": "forged", "data": {}}',
    '{"type": "done", "seq": 1, "generationId": "forged", "data": {}}',
    '{"type": "error", "seq": 2, "generationId": "forged", "error": "boom"}',
]


@pytest.mark.redis
async def test_foreign_messages_neither_end_readers_nor_move_the_counter(
    redis_url: str, key_prefix: str
) -> None:
    stream = f"hostile-{uuid.uuid4().hex}"
    async with (
        replicas("redis", 2, url=redis_url, prefix=key_prefix) as (a, b),
        open_redis(redis_url) as foreign,
    ):
        await a.create_job(stream, "u1")
        sub = await b.subscribe(stream, "u1")
        first = await a.emit_chunk(stream, delta("one "))
        assert isinstance(first, Published)
        for payload in FORGERIES:
            await foreign.publish(Keys.channel(stream), payload)
        await trio.sleep(0.3)  # past the reorder timeout: any hint has been checked
        second = await a.emit_chunk(stream, delta("two"))
        assert isinstance(second, Published) and second.seq == first.seq + 1
        await a.emit_done(stream, {"final": True})
        events = await collect(sub)
        assert texts(events) == ["one ", "two"]
        assert isinstance(events[-1], Done) and events[-1].data == {"final": True}
        assert all(e.generation != "forged" for e in events)
        stats = b.transport.statistics()
        assert stats.malformed_dropped == 4


@pytest.mark.redis
async def test_a_counter_past_1e14_still_publishes_integer_log_ids(
    redis_url: str, key_prefix: str
) -> None:
    # Lua 5.1 wrote seq 1e14 as "1e+14" in the log id: every later emit failed.
    stream = f"hostile-{uuid.uuid4().hex}"
    keys = Keys(key_prefix)
    async with (
        replicas("redis", 1, url=redis_url, prefix=key_prefix) as (a,),
        open_redis(redis_url) as raw,
    ):
        await raw.run_script(SET_EX, keys=[keys.seq(stream)], args=[str(10**14), 600])
        await a.create_job(stream, "u1")
        sub = await a.subscribe(stream, "u1")
        receipt = await a.emit_chunk(stream, delta("big"))
        assert receipt == Published(seq=10**14)
        await a.emit_done(stream, {"final": True})
        events = await collect(sub)
        assert [e.seq for e in events if isinstance(e, Chunk | Done)] == [10**14, 10**14 + 1]
        rows = await raw.xrange(keys.chunks(stream), "-", "+", 10)
        assert [entry for entry, _ in rows] == [f"{10**14}-1", f"{10**14 + 1}-1"]
        assert json.loads(rows[0][1]["event"]) == delta("big")


class _FailsOnBadStream(StreamActor):
    """An unexpected error inside one stream's actor, in a reader's catch-up."""

    async def _catch_up_from_log(self, sub: LocalSubscriber, now: float) -> None:
        if self.stream_id.endswith("-bad"):
            raise RuntimeError("injected")
        await super()._catch_up_from_log(sub, now)


@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_an_error_in_one_actor_ends_that_stream_only(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    prefix = request.getfixturevalue("key_prefix") if kind == "redis" else ""
    good, bad = f"iso-{uuid.uuid4().hex}", f"iso-{uuid.uuid4().hex}-bad"
    parts = [ReplicaParts(), ReplicaParts(actor=_FailsOnBadStream)]
    async with replicas(kind, 2, url=url, prefix=prefix, parts=parts) as (a, b):
        await a.create_job(good, "u1")
        await a.create_job(bad, "u1")
        good_sub = await b.subscribe(good, "u1")
        bad_sub = await b.subscribe(bad, "u1")
        await a.emit_chunk(good, delta("still "))
        bad_events = await collect(bad_sub)
        assert isinstance(bad_events[-1], Failure) and bad_events[-1].message == ACTOR_FAILED
        await a.emit_chunk(good, delta("here"))
        await a.emit_done(good, {"final": True})
        assert texts(await collect(good_sub)) == ["still ", "here"]
        # The replica lives on, and the failed stream can be read again (a fresh actor).
        assert b.transport.get_subscriber_count(bad) == 0
        await a.emit_done(bad, {"final": True})
        resumed = await b.get_job(bad)
        assert resumed is not None


@pytest.mark.redis
@pytest.mark.parametrize("ahead", [1_000, 10**12, 2**53 - 1])
async def test_a_forged_seq_of_the_turns_own_generation_changes_nothing(
    redis_url: str, key_prefix: str, ahead: int
) -> None:
    # Same generation as the turn, a seq the counter never handed out: the log and the
    # counter disprove it, so readers get neither a gap nor the forged content.
    stream = f"hostile-{uuid.uuid4().hex}"
    async with (
        replicas("redis", 2, url=redis_url, prefix=key_prefix) as (a, b),
        open_redis(redis_url) as foreign,
    ):
        job = await a.create_job(stream, "u1")
        sub = await b.subscribe(stream, "u1")
        first = await a.emit_chunk(stream, delta("one "))
        assert isinstance(first, Published)
        forged_seq = min(first.seq + ahead, 2**53 - 1)
        forged = {
            "type": "chunk",
            "seq": forged_seq,
            "generationId": job.generation,
            "data": delta("forged"),
        }
        await foreign.publish(Keys.channel(stream), json.dumps(forged))
        await trio.sleep(0.5)  # past the reorder timeout: the hint has been checked
        second = await a.emit_chunk(stream, delta("two"))
        assert isinstance(second, Published) and second.seq == first.seq + 1
        await a.emit_done(stream, {"final": True})
        with trio.fail_after(3):  # no wait on a seq that will never come
            events = await collect(sub)
        assert texts(events) == ["one ", "two"]
        assert [type(e) for e in events] == [Chunk, Chunk, Done]
        assert b.transport.statistics().delivery.foreign_hints >= 1


class _FailsHandlingAnAttach(StreamActor):
    """An unexpected error while the actor's task handles a request someone waits on."""

    async def _handle(self, command: Command) -> None:
        if isinstance(command, Attach) and self.stream_id.endswith("-bad"):
            raise RuntimeError("injected")
        await super()._handle(command)


async def test_a_request_in_hand_when_the_actor_fails_is_refused_not_left_waiting() -> None:
    good, bad = f"iso-{uuid.uuid4().hex}", f"iso-{uuid.uuid4().hex}-bad"
    parts = [ReplicaParts(actor=_FailsHandlingAnAttach)]
    async with replicas("memory", 1, parts=parts) as (a,):
        await a.create_job(good, "u1")
        await a.create_job(bad, "u1")
        with trio.fail_after(5), pytest.raises(StreamActorStopped):
            await a.subscribe(bad, "u1")
        sub = await a.subscribe(good, "u1")
        await a.emit_chunk(good, delta("fine"))
        await a.emit_done(good, {"final": True})
        assert texts(await collect(sub)) == ["fine"]
