"""A stream's commands run one at a time, in the order they were made.

An emit that finds its stream's actor with nothing to do is handled from the emitting
task, an incoming event from the delivering task (each saves task switches per event);
these tests pin what that must not change: whatever is asked of the stream meanwhile
waits behind it, in order; a caller cancelled mid-publish leaves the stream usable; and
a timer armed that way wakes the actor when it is due.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from streamcheck.impl import GenerationJobManager, MemoryBackend, open_replica
from streamcheck.impl.transport import Published
from streamcheck.model import Chunk, Done
from tests.backends import FAST, collect, delta, replicas


class _Gate:
    """Wraps a bus's publish: while closed, publishes wait before they reach the bus."""

    def __init__(self, manager: GenerationJobManager) -> None:
        self._bus = manager.transport.bus
        self._publish = self._bus.publish
        self._open = trio.Event()
        self.waiting = 0
        self._bus.publish = self._gated  # type: ignore[method-assign]

    async def _gated(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        await self._open.wait()
        return await self._publish(*args, **kwargs)

    def open(self) -> None:
        self._open.set()


@asynccontextmanager
async def _replica() -> AsyncIterator[GenerationJobManager]:
    async with open_replica(MemoryBackend(settings=FAST), settings=FAST) as manager:
        await manager.create_job("s1", "u1")
        # Let the stream's actor finish what creating the job asked of it, so that the
        # first emit finds it with nothing to do (the case the tests are about).
        await trio.testing.wait_all_tasks_blocked()
        yield manager


async def test_concurrent_emits_on_one_stream_publish_in_call_order() -> None:
    async with _replica() as manager, trio.open_nursery() as nursery:
        gate = _Gate(manager)
        seqs: dict[str, int] = {}

        async def emit(name: str) -> None:
            receipt = await manager.emit_chunk("s1", delta(name))
            assert isinstance(receipt, Published)
            seqs[name] = receipt.seq

        nursery.start_soon(emit, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(emit, "second")
        await trio.testing.wait_all_tasks_blocked()
        assert gate.waiting == 1  # the second waits for the first, not for the gate
        gate.open()
    assert seqs["first"] < seqs["second"]


async def test_a_subscriber_attaching_during_an_emit_sees_that_emit_once() -> None:
    async with _replica() as manager, trio.open_nursery() as nursery:
        gate = _Gate(manager)
        nursery.start_soon(manager.emit_chunk, "s1", delta("in flight"))
        await trio.testing.wait_all_tasks_blocked()
        subscribed = trio.Event()
        events = []

        async def client() -> None:
            async with await manager.subscribe("s1", "u1") as subscription:
                subscribed.set()
                events.extend(await collect(subscription))

        nursery.start_soon(client)
        await trio.testing.wait_all_tasks_blocked()
        assert not subscribed.is_set()  # its attachment waits behind the emit
        gate.open()
        await subscribed.wait()
        await manager.emit_done("s1", {"final": True})
        await manager.complete_job("s1")
    assert [type(e) for e in events] == [Chunk, Done]
    assert [e.seq for e in events if isinstance(e, Chunk | Done)] == [0, 1]


async def test_an_emitter_cancelled_mid_publish_leaves_the_stream_usable() -> None:
    async with _replica() as manager:
        gate = _Gate(manager)
        with trio.move_on_after(0.05) as scope:
            await manager.emit_chunk("s1", delta("given up"))
        assert scope.cancelled_caught and gate.waiting == 1
        gate.open()
        with trio.fail_after(5):
            receipt = await manager.emit_chunk("s1", delta("next"))
        assert isinstance(receipt, Published)


@asynccontextmanager
async def _reader_with_log_reads() -> AsyncIterator[tuple[GenerationJobManager, str, list[float]]]:
    """A turn produced on one replica and read on another, the reader attached and
    settled; yields the reader, the turn's generation and the times (trio's clock) at
    which the reader's replica reads the chunk log from then on."""
    async with replicas("memory", 2) as (producer, reader):
        job = await producer.create_job("s1", "u1")
        async with await reader.subscribe("s1", "u1"):
            await trio.testing.wait_all_tasks_blocked()
            reads: list[float] = []
            bus = reader.transport.bus
            read_log = bus.read_log

            async def recorded(*args: Any, **kwargs: Any) -> Any:
                reads.append(trio.current_time())
                return await read_log(*args, **kwargs)

            bus.read_log = recorded  # type: ignore[method-assign]
            yield reader, job.generation, reads


async def test_a_gap_seen_outside_the_actor_is_repaired_at_the_reorder_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An event handled from the delivering task can arm a timer earlier than the one
    the actor waits for (here the reorder timeout, before the idle probe): the actor
    must wake for it, not sleep on until its old deadline."""
    async with _reader_with_log_reads() as (reader, generation, reads):
        gap_at = trio.current_time()
        # Seq 1 arrives, seq 0 never will: the reader parks 1 and arms its reorder timer.
        reader.transport.deliver("s1", Chunk(seq=1, generation=generation, data={}))
        await trio.sleep(FAST.idle_probe_s)
    assert reads, "the gap was never repaired from the log"
    assert reads[0] - gap_at == pytest.approx(FAST.reorder_timeout_s, abs=0.01)
    assert FAST.reorder_timeout_s < FAST.idle_probe_s


async def test_a_log_read_asked_for_outside_the_actor_is_done_by_it_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An event handled from the delivering task whose step needs I/O (here: the
    reorder buffer is full, so it asks for the log at once) hands that I/O to the
    actor, which does it before anything else, without waiting for a timer."""
    async with _reader_with_log_reads() as (reader, generation, reads):
        full_at = trio.current_time()
        # Seq 0 never arrives; seqs 1.. fill the reorder buffer to its capacity, each
        # delivered when the actor has nothing to do (so each is handled outside it).
        for seq in range(1, FAST.reorder_capacity + 1):
            reader.transport.deliver("s1", Chunk(seq=seq, generation=generation, data={}))
            await trio.testing.wait_all_tasks_blocked()
        assert reads[:1] == [full_at]
