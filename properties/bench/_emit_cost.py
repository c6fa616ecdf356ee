"""Benchmark 1: the cost of one emit over real Redis, against one raw PUBLISH.

An emit is ``GenerationJobManager.emit_chunk``: the fence check, the seq (INCR), the
chunk-log append (XADD) and the PUBLISH, in one Lua call, one round trip, plus the
replica's own work around it (its actor, the envelope). The baseline is what no design
can beat: one awaited coredis PUBLISH of the very same envelope, measured in the same
run on the same Redis. Both channels have one subscriber in this process (the
producing replica holds its stream's channel for aborts; the baseline's channel gets a
client that parses each message), so both pay the same fan-out.

Emits and PUBLISHes alternate in rounds (in a rotating order) so drift on a noisy
machine hits both; each side's figure is the median of its per-round means. A third
side, the bus's publish called directly, splits the emit's extra cost into what the
script and the replica's pub/sub add and what the transport and the actor add.

Redis's own CPU per call (``INFO commandstats``, read before and after: every client of
the server counts) shows what the script costs the server, and so the most events one
Redis core can log this way.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import trio

from streamcheck.impl.redis import PubSubMessage, Subscriber
from streamcheck.impl.transport import EventKind, Published, encode_split
from streamcheck.properties.bench._model import (
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
from streamcheck.properties.bench._redis import bench_client, redis_replicas
from streamcheck.properties.bench._sizes import Sizes
from streamcheck.properties.bench._streams import USER, delta

NAME = "emit-cost"
TITLE = "per-event emit cost over Redis, vs one raw coredis PUBLISH round trip"
GOAL = Goal(
    text="emit round trip <= 1.3x raw PUBLISH round trip",
    checks=(Check(figure=RATIO, op=Op.AT_MOST, threshold=1.3),),
)


#: The three sides measured, alternating: the baseline, the bus's publish alone (the
#: script through the batcher, the envelope, the replica receiving its own message back
#: on the channel it holds for aborts) and the whole emit (plus the transport and the
#: stream's actor).
PUBLISH, BUS, EMIT = "raw PUBLISH", "RedisBus.publish", "emit_chunk"


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    means, calls, server = trio.run(_measure, context.redis_url, context.key_prefix, context.sizes)
    ms = {side: statistics.median(means[side]) * 1000 for side in (PUBLISH, BUS, EMIT)}
    sizes = context.sizes
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=(
            Figure(name="emit_chunk round trip", value=ms[EMIT], unit="ms"),
            Figure(
                name="emit_chunk p50 of single calls",
                value=statistics.median(calls[EMIT]) * 1000,
                unit="ms",
            ),
            Figure(
                name="raw PUBLISH p50 of single calls",
                value=statistics.median(calls[PUBLISH]) * 1000,
                unit="ms",
            ),
            Figure(name="RedisBus.publish round trip", value=ms[BUS], unit="ms"),
            Figure(name="RedisBus.publish vs raw PUBLISH", value=ms[BUS] / ms[PUBLISH], unit="x"),
            Figure(name="emits per side", value=sizes.emit_rounds * sizes.emit_ops, unit="calls"),
            *(
                Figure(name=f"Redis CPU per {command}", value=us, unit="µs")
                for command, us in server.items()
            ),
            *(
                [
                    Figure(
                        name="events/s one Redis core can log at that cost",
                        value=1e6 / server["EVALSHA"],
                        unit="events/s",
                    )
                ]
                if server.get("EVALSHA")
                else []
            ),
        ),
        baseline=Baseline(
            name=f"raw {bench_client()} PUBLISH round trip", value=ms[PUBLISH], unit="ms"
        ),
        ratio=ms[EMIT] / ms[PUBLISH],
        goal=GOAL,
        notes=(
            f"median of {sizes.emit_rounds} rounds of {sizes.emit_ops} awaited calls per "
            f"side (sides in a rotating order), after {sizes.emit_warmup} warm-up calls "
            "each; one stream each",
            "RedisBus.publish is the emit without the transport and the stream's actor: "
            "the publish script through the batcher, the envelope, and the replica "
            "receiving the message back on the stream's channel (held for aborts)",
        ),
    )


async def _measure(
    url: str, run_prefix: str, sizes: Sizes
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    means: dict[str, list[float]] = {PUBLISH: [], BUS: [], EMIT: []}
    calls: dict[str, list[float]] = {PUBLISH: [], BUS: [], EMIT: []}
    async with redis_replicas(url, 1, run_prefix=run_prefix) as redis_run:
        manager = redis_run.managers[0]
        emitted = f"bench-{redis_run.token}-emit"
        published = f"bench-{redis_run.token}-bus"
        job = await manager.create_job(emitted, USER)
        bus_job = await manager.create_job(published, USER)
        bus = manager.transport.bus
        prefix, suffix = encode_split("chunk", job.generation, delta(0, 0.0))
        channel = f"bench-{redis_run.token}-raw-publish"
        client = redis_run.admin.raw
        raw_publish = redis_run.raw_publish
        floor = 0

        async def emits(count: int) -> list[float]:
            bodies = [delta(i, 0.0) for i in range(count)]
            took: list[float] = []
            for body in bodies:
                started = time.perf_counter()
                await manager.emit_chunk(emitted, body)
                took.append(time.perf_counter() - started)
            return took

        async def bus_publishes(count: int) -> list[float]:
            nonlocal floor
            bodies = [delta(i, 0.0) for i in range(count)]
            took: list[float] = []
            for body in bodies:
                started = time.perf_counter()
                outcome = await bus.publish(
                    published,
                    generation=bus_job.generation,
                    kind=EventKind.CHUNK,
                    body=body,
                    floor=floor,
                )
                took.append(time.perf_counter() - started)
                assert isinstance(outcome, Published), outcome
                floor = outcome.seq + 1
            return took

        async def publishes(count: int) -> list[float]:
            payloads = [f"{prefix}{i}{suffix}" for i in range(count)]
            took: list[float] = []
            for payload in payloads:
                started = time.perf_counter()
                await raw_publish(channel, payload)
                took.append(time.perf_counter() - started)
            return took

        server_before = await _command_stats(client)
        sides = {PUBLISH: publishes, BUS: bus_publishes, EMIT: emits}
        order = [PUBLISH, BUS, EMIT]
        async with redis_run.admin.subscriber() as subscriber:
            await subscriber.subscribe(channel)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_parse_everything, subscriber)
                for side in order:
                    await sides[side](sizes.emit_warmup)
                for round_ in range(sizes.emit_rounds):
                    # Rotate the order so drift on a noisy machine hits every side.
                    for side in order[round_ % 3 :] + order[: round_ % 3]:
                        took = await sides[side](sizes.emit_ops)
                        means[side].append(sum(took) / len(took))
                        calls[side].extend(took)
                nursery.cancel_scope.cancel()
        server = _per_call(server_before, await _command_stats(client))
        for stream_id in (emitted, published):
            await manager.emit_done(stream_id, {"final": True})
            await manager.complete_job(stream_id)
    return means, calls, server


#: Redis commands whose server CPU is reported: the publish script and the baseline.
_SERVER_COMMANDS = ("EVALSHA", "PUBLISH")


async def _command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """``(calls, µs)`` so far for each of :data:`_SERVER_COMMANDS`, server-wide."""
    stats = await client.info("commandstats")
    found: dict[str, tuple[int, int]] = {}
    for command in _SERVER_COMMANDS:
        row = stats.get(f"cmdstat_{command.lower()}") or {}
        found[command] = (int(row.get("calls", 0)), int(row.get("usec", 0)))
    return found


def _per_call(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """Server µs per call between two readings (commands not called are left out)."""
    per_call: dict[str, float] = {}
    for command, (calls, usec) in after.items():
        calls_before, usec_before = before.get(command, (0, 0))
        if calls > calls_before:
            per_call[command] = (usec - usec_before) / (calls - calls_before)
    return per_call


async def _parse_everything(subscriber: Subscriber) -> None:
    """The baseline channel's client: parse each message, as a replica's listener does."""
    while True:
        event = await subscriber.receive()
        if isinstance(event, PubSubMessage):
            json.loads(event.data)


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=True, run=run)
