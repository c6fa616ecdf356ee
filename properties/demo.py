"""The demo: a client attaches to one replica mid-generation, drops, and resumes on another.

Three replicas share one backend. The generator runs on replica A; the client attaches
to replica B while the answer is being written, drops after a few words, and resumes on
replica C (a snapshot up to a seq, then everything after it). The demo prints where the
client attached, dropped and resumed, and the answer it assembled, and checks that
answer against what the generator emitted: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import trio

from streamcheck.impl import (
    GenerationJobManager,
    MemoryBackend,
    RedisLike,
    ReplicaSettings,
    content_text,
    open_replica,
)
from streamcheck.impl.redis import open_coredis
from streamcheck.model import Chunk, Done, Gap, JSONValue

ANSWER = (
    "Resumable streams keep every event in a log ordered by sequence number, so a "
    "client that drops can come back on any replica, take a snapshot up to a known seq "
    "and continue from the next one without losing or repeating a single word."
)
#: Where each part runs: the generator, the client's first attachment, its resume.
GENERATOR, ATTACH, RESUME = "A", "B", "C"
REPLICAS = (GENERATOR, ATTACH, RESUME)


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
async def _replicas(backend: str, redis_url: str) -> AsyncIterator[dict[str, GenerationJobManager]]:
    """One replica per name of :data:`REPLICAS`, all on one backend (each its own
    Redis client over Redis, as separate processes would have)."""
    settings = ReplicaSettings()
    shared = MemoryBackend(settings=settings) if backend == "memory" else None
    async with AsyncExitStack() as stack:
        replicas: dict[str, GenerationJobManager] = {}
        for name in REPLICAS:
            store: MemoryBackend | RedisLike = (
                shared
                if shared is not None
                else await stack.enter_async_context(open_coredis(redis_url))
            )
            replicas[name] = await stack.enter_async_context(open_replica(store, settings=settings))
        yield replicas


async def run_demo(
    *, backend: str = "memory", redis_url: str = "", word_delay: float = 0.002, echo: bool = True
) -> DemoResult:
    stream_id, user = f"demo-{time.time_ns()}", "demo-user"
    words = [w + " " for w in ANSWER.split(" ")]
    started = time.perf_counter()
    async with _replicas(backend, redis_url) as replicas:
        generator, attach, resume = (replicas[name] for name in REPLICAS)
        await generator.create_job(stream_id, user)
        attached = trio.Event()
        dropped_at = trio.Event()
        received: list[str] = []

        def say(line: str) -> None:
            if echo:
                print(line)

        async def generate() -> None:
            for i, word in enumerate(words):
                if i == 10:
                    await attached.wait()  # make sure the client joins mid-answer
                if i == 25:
                    await dropped_at.wait()  # and that some words land while it is away
                await generator.emit_chunk(stream_id, _delta(word))
                await trio.sleep(word_delay)
            await generator.emit_done(stream_id, {"final": True, "text": "".join(words)})
            await generator.complete_job(stream_id)

        async def client() -> None:
            subscription = await attach.subscribe(stream_id, user)
            say(f"client attached to replica {ATTACH} mid-answer")
            attached.set()
            async for event in subscription:
                if isinstance(event, Chunk):
                    received.append(_text(event))
                if len(received) == 18:
                    break
            await subscription.aclose()
            say(f"client dropped from replica {ATTACH} after {len(received)} words")
            dropped_at.set()
            await trio.sleep(word_delay * 5)
            state, resumed = await resume.resume(stream_id, user)
            snapshot = content_text(state.aggregated_content)
            say(
                f"client resumed on replica {RESUME}: snapshot through seq {state.through_seq} "
                f"holds {len(snapshot.split())} words, the rest follows live"
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

        say(f"generator on replica {GENERATOR}")
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
