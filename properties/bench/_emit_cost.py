"""Benchmark 1: the cost of one emit over real Redis, against one raw PUBLISH.

An emit is ``GenerationJobManager.emit_chunk``: the fence check, the seq (INCR), the
chunk-log append (XADD) and the PUBLISH, in one Lua call, one round trip, plus the
replica's own work around it (its actor, the envelope). The baseline is what no design
can beat: one awaited coredis PUBLISH of the very same envelope, measured in the same
run on the same Redis. Both channels have one subscriber in this process (the
producing replica holds its stream's channel for aborts; the baseline's channel gets a
client that parses each message), so both pay the same fan-out.

Emits and PUBLISHes alternate in rounds (order flipped each round) so drift on a noisy
machine hits both; each side's figure is the median of its per-round means.
"""

from __future__ import annotations

import json
import statistics
import time

import trio

from impl.redis import PubSubMessage, Subscriber
from impl.transport._envelope import encode_split
from properties.bench._model import (
    RATIO,
    Baseline,
    BenchContext,
    Benchmark,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
)
from properties.bench._redis import redis_replicas
from properties.bench._sizes import Sizes
from properties.bench._streams import USER, delta

NAME = "emit-cost"
TITLE = "per-event emit cost over Redis, vs one raw coredis PUBLISH round trip"
GOAL = Goal(
    text="emit round trip <= 1.3x raw PUBLISH round trip",
    checks=(Check(figure=RATIO, op=Op.AT_MOST, threshold=1.3),),
)


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    emit_means, publish_means, emit_calls, publish_calls = trio.run(
        _measure, context.redis_url, context.key_prefix, context.sizes
    )
    emit_ms = statistics.median(emit_means) * 1000
    publish_ms = statistics.median(publish_means) * 1000
    sizes = context.sizes
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=(
            Figure(name="emit_chunk round trip", value=emit_ms, unit="ms"),
            Figure(
                name="emit_chunk p50 of single calls",
                value=statistics.median(emit_calls) * 1000,
                unit="ms",
            ),
            Figure(
                name="raw PUBLISH p50 of single calls",
                value=statistics.median(publish_calls) * 1000,
                unit="ms",
            ),
            Figure(name="emits per side", value=sizes.emit_rounds * sizes.emit_ops, unit="calls"),
        ),
        baseline=Baseline(name="raw coredis PUBLISH round trip", value=publish_ms, unit="ms"),
        ratio=emit_ms / publish_ms,
        goal=GOAL,
        notes=(
            f"median of {sizes.emit_rounds} alternating rounds of {sizes.emit_ops} awaited "
            f"calls per side, after {sizes.emit_warmup} warm-up calls each; one stream",
        ),
    )


async def _measure(
    url: str, run_prefix: str, sizes: Sizes
) -> tuple[list[float], list[float], list[float], list[float]]:
    emit_means: list[float] = []
    publish_means: list[float] = []
    emit_calls: list[float] = []
    publish_calls: list[float] = []
    async with redis_replicas(url, 1, run_prefix=run_prefix) as redis_run:
        manager = redis_run.managers[0]
        stream_id = f"bench-{redis_run.token}-emit"
        job = await manager.create_job(stream_id, USER)
        prefix, suffix = encode_split("chunk", job.generation, delta(0, 0.0))
        channel = f"bench-{redis_run.token}-raw-publish"
        client = redis_run.admin.raw

        async def emits(count: int) -> list[float]:
            bodies = [delta(i, 0.0) for i in range(count)]
            took: list[float] = []
            for body in bodies:
                started = time.perf_counter()
                await manager.emit_chunk(stream_id, body)
                took.append(time.perf_counter() - started)
            return took

        async def publishes(count: int) -> list[float]:
            payloads = [f"{prefix}{i}{suffix}" for i in range(count)]
            took: list[float] = []
            for payload in payloads:
                started = time.perf_counter()
                await client.publish(channel, payload)
                took.append(time.perf_counter() - started)
            return took

        async with redis_run.admin.subscriber() as subscriber:
            await subscriber.subscribe(channel)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_parse_everything, subscriber)
                await emits(sizes.emit_warmup)
                await publishes(sizes.emit_warmup)
                for round_ in range(sizes.emit_rounds):
                    sides = (emits, publishes) if round_ % 2 == 0 else (publishes, emits)
                    for side in sides:
                        took = await side(sizes.emit_ops)
                        means = emit_means if side is emits else publish_means
                        calls = emit_calls if side is emits else publish_calls
                        means.append(sum(took) / len(took))
                        calls.extend(took)
                nursery.cancel_scope.cancel()
        await manager.emit_done(stream_id, {"final": True})
        await manager.complete_job(stream_id)
    return emit_means, publish_means, emit_calls, publish_calls


async def _parse_everything(subscriber: Subscriber) -> None:
    """The baseline channel's client: parse each message, as a replica's listener does."""
    while True:
        event = await subscriber.receive()
        if isinstance(event, PubSubMessage):
            json.loads(event.data)


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=True, run=run)
