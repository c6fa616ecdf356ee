"""Benchmark 4: memory held per idle stream actor (tracemalloc).

What "idle stream actor" means: the transport keeps one :class:`StreamActor` task per
stream it tracks (``EventTransport.get_tracked_stream_ids``); it is idle
(``is_idle``) when it has no subscriber and no abort callback, and stays so until the
cleanup pass forgets it. A finished turn leaves one behind on every replica that
served it. Here N actors are started through the transport's own calls
(``start_producing`` then ``stop_producing``, which is what a turn's start and end do
to its actor) on a memory-backend replica, and left waiting on their inboxes.

What is counted: every Python allocation still alive afterwards, divided by N. That is
the actor object and its dicts, its inbox (a memory channel pair), its cancel scope,
its trio task and coroutine frames, the transport's registry entry and the stream id.
Not counted: a job record or chunk log (they belong to the job store and the backend,
and expire with the job's TTL), nor memory outside Python's allocator.
"""

from __future__ import annotations

import gc
import tracemalloc

import trio
import trio.testing

from streamcheck.impl import MemoryBackend, open_replica
from streamcheck.impl.seams import EarlyBuffer
from streamcheck.properties.bench._model import (
    BenchContext,
    Benchmark,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
)

NAME = "idle-memory"
TITLE = "memory per idle stream actor (tracemalloc)"
TARGET_ACTORS = 10_000
GOAL = Goal(
    text=f"<= 16 KiB per idle stream actor at {TARGET_ACTORS:,} streams",
    checks=(Check(figure=f"per idle actor @ {TARGET_ACTORS}", op=Op.AT_MOST, threshold=16.0),),
)
KIB = 1024


def run(context: BenchContext) -> BenchResult:
    actors = context.sizes.idle_actors
    held, idle = trio.run(_measure, actors)
    notes = [f"{actors} actors on one memory-backend replica"]
    if idle != actors:
        notes.append(f"only {idle} of {actors} actors were idle when measured")
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=(
            # Named by the count: the goal is judged only at the count it states.
            Figure(name=f"per idle actor @ {actors}", value=held / actors / KIB, unit="KiB"),
            Figure(name="actors", value=actors, unit="actors"),
            Figure(name="total held", value=held / KIB / KIB, unit="MiB"),
        ),
        goal=GOAL,
        notes=tuple(notes),
    )


async def _measure(actors: int) -> tuple[int, int]:
    """Bytes held by ``actors`` idle actors, and how many of them were idle."""
    async with open_replica(MemoryBackend()) as manager:
        transport = manager.transport
        await trio.testing.wait_all_tasks_blocked()
        started_tracing = not tracemalloc.is_tracing()
        if started_tracing:
            tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for index in range(actors):
                stream_id = f"bench-idle-{index}"
                transport.start_producing(stream_id, "g", EarlyBuffer())
                transport.stop_producing(stream_id, "g")
            # Every actor has run its two commands and waits on its inbox.
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            if started_tracing:
                tracemalloc.stop()
        tracked = transport.get_tracked_stream_ids()
        idle = sum(1 for stream_id in tracked if transport.is_idle(stream_id))
    return after - before, idle


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=False, run=run)
