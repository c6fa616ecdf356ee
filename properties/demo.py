"""The demo: two replicas, a client that attaches mid-generation, drops and resumes.

It prints the answer the client assembled and checks it against what the generator
emitted: nothing lost, nothing duplicated, one terminal at the end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from streamcheck.impl import GenerationJobManager, MemoryBackend, ReplicaSettings, open_replica
from streamcheck.impl._content import content_text
from streamcheck.model import Chunk, Done, Gap, JSONValue

ANSWER = (
    "Resumable streams keep every event in a log ordered by sequence number, so a "
    "client that drops can come back on any replica, take a snapshot up to a known seq "
    "and continue from the next one without losing or repeating a single word."
)


@dataclass(frozen=True, slots=True)
class DemoResult:
    answer: str
    expected: str
    events: int
    seconds: float
    snapshot_seq: int | None

    @property
    def ok(self) -> bool:
        return self.answer == self.expected


def _delta(text: str) -> JSONValue:
    return {
        "event": "on_message_delta",
        "data": {"index": 0, "delta": {"content": [{"type": "text", "text": text}]}},
    }


@asynccontextmanager
async def _two_replicas(
    backend: str, redis_url: str
) -> AsyncIterator[tuple[GenerationJobManager, GenerationJobManager]]:
    settings = ReplicaSettings()
    if backend == "memory":
        shared = MemoryBackend(settings=settings)
        async with (
            open_replica(shared, settings=settings) as a,
            open_replica(shared, settings=settings) as b,
        ):
            yield a, b
        return
    from streamcheck.impl.redis._coredis import open_coredis

    async with (
        open_coredis(redis_url) as ra,
        open_coredis(redis_url) as rb,
        open_replica(ra, settings=settings) as a,
        open_replica(rb, settings=settings) as b,
    ):
        yield a, b


async def run_demo(
    *, backend: str = "memory", redis_url: str = "", word_delay: float = 0.002, echo: bool = True
) -> DemoResult:
    stream_id, user = f"demo-{time.time_ns()}", "demo-user"
    words = [w + " " for w in ANSWER.split(" ")]
    started = time.perf_counter()
    async with _two_replicas(backend, redis_url) as (replica_a, replica_b):
        await replica_a.create_job(stream_id, user)
        attached = trio.Event()
        dropped_at = trio.Event()
        received: list[str] = []

        async def generate() -> None:
            for i, word in enumerate(words):
                if i == 10:
                    await attached.wait()  # make sure the client joins mid-answer
                if i == 25:
                    await dropped_at.wait()  # and that some words land while it is away
                await replica_a.emit_chunk(stream_id, _delta(word))
                await trio.sleep(word_delay)
            await replica_a.emit_done(stream_id, {"final": True, "text": "".join(words)})
            await replica_a.complete_job(stream_id)

        async def client() -> None:
            subscription = await replica_b.subscribe(stream_id, user)
            attached.set()
            async for event in subscription:
                if isinstance(event, Chunk):
                    received.append(_text(event))
                if len(received) == 18:
                    break
            await subscription.aclose()
            if echo:
                print(f"client on replica B: dropped after {len(received)} words")
            dropped_at.set()
            await trio.sleep(word_delay * 5)
            state, resumed = await replica_b.resume(stream_id, user)
            snapshot = content_text(state.aggregated_content)
            if echo:
                print(
                    f"client resumed on replica B: snapshot through seq {state.through_seq} "
                    f"holds {len(snapshot.split())} words"
                )
            received[:] = [snapshot]
            async for event in resumed:
                if isinstance(event, Gap):
                    raise AssertionError(f"gap reported: {event}")
                if isinstance(event, Chunk):
                    received.append(_text(event))
                elif isinstance(event, Done):
                    break
            result_box.append((state.through_seq, "".join(received)))

        result_box: list[tuple[int | None, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(generate)
            nursery.start_soon(client)
    seconds = time.perf_counter() - started
    through, answer = result_box[0]
    return DemoResult(
        answer=answer,
        expected="".join(words),
        events=len(words) + 1,
        seconds=seconds,
        snapshot_seq=through,
    )


def _text(event: Chunk) -> str:
    data = event.data
    assert isinstance(data, dict)
    inner = data["data"]
    assert isinstance(inner, dict)
    delta = inner["delta"]
    assert isinstance(delta, dict)
    content = delta["content"]
    assert isinstance(content, list) and isinstance(content[0], dict)
    text = content[0]["text"]
    assert isinstance(text, str)
    return text
