"""Benchmark 2: emit→deliver latency across two replicas on one Redis, and losses.

Generators run on replica A, clients on replica B (each replica with its own Redis
client, as two processes would have). Each stream emits 20 chunks per second on a
fixed schedule, the streams' slots staggered across the period. Latency is from just
before ``emit_chunk`` is called on A to the chunk coming out of the client's
subscription on B. Every chunk A emitted (by the seq it got back) must reach B exactly
once: ``lost`` and ``duplicated`` count by seq.

Both replicas, every generator and every client share one Python thread here, and
Redis the same two cores, so at 256 streams this measures a whole small deployment on
one machine, not one replica's share of it. If that machine can't keep up with the
offered rate, generators fall behind their schedule: latency is still measured from
the actual call, so the wait before it shows in ``generator lag max`` and in the
achieved rate (below the offered one), not in the percentiles.

``Python CPU busy`` is the process's CPU time while a stream count's chunks flow, as a
share of one core: near 100 % the process cannot keep up and latency becomes queueing.
Paced events rarely share a wake-up, so each costs more CPU than in the throughput
benchmark's back-to-back runs. ``longest GC pause`` and ``full GC collections`` tell a
tail made by Python's garbage collector (a full collection walks every object in the
process, the benchmark's own and its imports') from one made by the transport.

The baseline, measured in the same run right after each stream count: as many paced
loops of raw coredis PUBLISH (one client), at the same rate and slots, to one coredis
subscriber (another client) that parses each message, latency from just before the
PUBLISH to the parsed message. No design delivers faster than that on this machine, so
it is the floor the goal sits on: the result's baseline is its p99 at the largest
stream count, and the ratio ours over it.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass

import trio

from streamcheck.impl import ReplicaSettings
from streamcheck.impl.redis import PubSubMessage, Subscriber, open_redis_client
from streamcheck.impl.transport import encode_split
from streamcheck.properties.bench._gc_pauses import GcPauses, recording_gc_pauses
from streamcheck.properties.bench._model import (
    Baseline,
    BenchContext,
    Benchmark,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
    percentile,
)
from streamcheck.properties.bench._redis import (
    RedisRun,
    bench_client,
    new_token,
    redis_replicas,
)
from streamcheck.properties.bench._sizes import Sizes
from streamcheck.properties.bench._streams import Tally, delta, drive, open_streams

NAME = "latency"
TITLE = "emit->deliver latency across replicas over Redis, 20 events/s per stream"
#: Long enough for a reorder timeout (0.5 s) and a log repair after the last emit.
DRAIN_TIMEOUT_S = 5.0
TARGET_STREAMS = 256
GOAL_STREAMS = (1, 16, 64, TARGET_STREAMS)
P99_LIMIT_MS = 20.0
FLOOR_RATIO_LIMIT = 2.0


def _at(streams: int) -> str:
    return f"@ {streams} stream{'s' if streams != 1 else ''}"


GOAL = Goal(
    text=(
        f"p99 <= {FLOOR_RATIO_LIMIT:g}x the same-run raw PUBLISH p99 and <= {P99_LIMIT_MS:g} ms "
        f"at {', '.join(map(str, GOAL_STREAMS))} streams; 0 lost, 0 duplicated"
    ),
    checks=(
        *(
            Check(figure=f"p99 {_at(n)}", op=Op.AT_MOST, threshold=P99_LIMIT_MS)
            for n in GOAL_STREAMS
        ),
        *(
            Check(figure=f"p99 vs raw PUBLISH p99 {_at(n)}", op=Op.AT_MOST, threshold=2.0)
            for n in GOAL_STREAMS
        ),
        Check(figure="lost (all runs)", op=Op.AT_MOST, threshold=0),
        Check(figure="duplicated (all runs)", op=Op.AT_MOST, threshold=0),
    ),
)


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    url, prefix, sizes = context.redis_url, context.key_prefix, context.sizes
    tallies: list[tuple[int, Tally]] = []
    busy: dict[int, float] = {}
    pauses: dict[int, GcPauses] = {}
    floors: dict[int, _RawTally] = {}
    #: p99 in ms per stream count, ours and the floor's (absent where nothing arrived).
    p99_ms: dict[int, float] = {}
    floor_p99_ms: dict[int, float] = {}
    frozen: dict[int, tuple[Tally, GcPauses]] = {}
    for n in sizes.latency_streams:
        tally, busy[n], pauses[n] = trio.run(_measure, url, prefix, sizes, n, False)
        tallies.append((n, tally))
        floors[n] = trio.run(_measure_raw, url, sizes, n)
        frozen_tally, _, frozen_pauses = trio.run(_measure, url, prefix, sizes, n, True)
        frozen[n] = (frozen_tally, frozen_pauses)
    figures: list[Figure] = []
    notes: list[str] = [
        f"{sizes.latency_seconds:g} s of paced emits per stream count, "
        f"{int(sizes.latency_seconds * sizes.latency_rate_hz)} chunks per stream; "
        "both replicas, generators and clients share one Python thread"
    ]
    for n, tally in tallies:
        latencies_ms = [x * 1000 for x in tally.latencies]
        at = _at(n)
        if latencies_ms:
            p99_ms[n] = percentile(latencies_ms, 0.99)
            figures += [
                Figure(name=f"p50 {at}", value=percentile(latencies_ms, 0.50), unit="ms"),
                Figure(name=f"p99 {at}", value=p99_ms[n], unit="ms"),
                Figure(name=f"max {at}", value=latencies_ms[-1], unit="ms"),
            ]
        figures += [
            Figure(name=f"delivered {at}", value=tally.delivered, unit="chunks"),
            Figure(name=f"lost {at}", value=tally.lost, unit="chunks"),
            Figure(name=f"duplicated {at}", value=tally.duplicated, unit="chunks"),
            Figure(name=f"generator lag max {at}", value=tally.max_lag * 1000, unit="ms"),
            Figure(name=f"Python CPU busy {at}", value=busy[n] * 100, unit="% of a core"),
            Figure(name=f"longest GC pause {at}", value=pauses[n].longest * 1000, unit="ms"),
            Figure(
                name=f"full GC collections {at}",
                value=pauses[n].full_collections,
                unit="collections",
            ),
            Figure(
                name=f"achieved emit rate {at}",
                value=tally.emitted / tally.emit_seconds if tally.emit_seconds else 0.0,
                unit="events/s",
            ),
        ]
        frozen_tally, frozen_pauses = frozen[n]
        if frozen_tally.latencies:
            frozen_ms = [x * 1000 for x in frozen_tally.latencies]
            figures.append(
                Figure(name=f"p99 {at}, heap frozen", value=percentile(frozen_ms, 0.99), unit="ms")
            )
        figures += [
            Figure(
                name=f"longest GC pause {at}, heap frozen",
                value=frozen_pauses.longest * 1000,
                unit="ms",
            ),
            Figure(
                name=f"full GC collections {at}, heap frozen",
                value=frozen_pauses.full_collections,
                unit="collections",
            ),
        ]
        notes += _anomaly_notes(f"{at}, heap frozen", frozen_tally)
        floor = floors[n]
        if floor.latencies:
            floor_ms = [x * 1000 for x in floor.latencies]
            floor_p99_ms[n] = percentile(floor_ms, 0.99)
            figures += [
                Figure(name=f"raw PUBLISH p50 {at}", value=percentile(floor_ms, 0.50), unit="ms"),
                Figure(name=f"raw PUBLISH p99 {at}", value=floor_p99_ms[n], unit="ms"),
            ]
            if n in p99_ms and floor_p99_ms[n] > 0:
                ours_over_floor = p99_ms[n] / floor_p99_ms[n]
                figures.append(
                    Figure(name=f"p99 vs raw PUBLISH p99 {at}", value=ours_over_floor, unit="x")
                )
        if floor.published != floor.received:
            notes.append(
                f"{at}: the raw baseline received {floor.received:,} of "
                f"{floor.published:,} PUBLISHes within the drain timeout"
            )
        offered = n * sizes.latency_rate_hz
        notes.append(f"{at}: offered {offered:,.0f} events/s in total")
        notes += _anomaly_notes(at, tally)
    every = [t for _, t in tallies] + [t for t, _ in frozen.values()]
    figures += [
        Figure(name="lost (all runs)", value=sum(t.lost for t in every), unit="chunks"),
        Figure(
            name="duplicated (all runs)",
            value=sum(t.duplicated for t in every),
            unit="chunks",
        ),
    ]
    largest = max(sizes.latency_streams)
    at_largest = f"@ {largest} stream{'s' if largest != 1 else ''}"
    ours = p99_ms.get(largest)
    floor_at_largest = floor_p99_ms.get(largest)
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures),
        baseline=(
            Baseline(
                name=f"raw {bench_client()} PUBLISH->receive p99 {at_largest}",
                value=floor_at_largest,
                unit="ms",
                source="measured in this run, same pacing and slots",
            )
            if floor_at_largest is not None
            else None
        ),
        ratio=ours / floor_at_largest if ours is not None and floor_at_largest else None,
        goal=GOAL,
        notes=tuple(notes),
        headline=f"p99 {at_largest}",
    )


def _anomaly_notes(at: str, tally: Tally) -> list[str]:
    notes: list[str] = []
    if tally.refused:
        notes.append(f"{at}: {tally.refused} emits refused by the publish fence")
    if tally.gap_seqs:
        notes.append(f"{at}: clients received Gap events covering {tally.gap_seqs} seqs")
    if tally.unterminated:
        notes.append(f"{at}: {tally.unterminated} clients never received the terminal")
    return notes


async def _measure(
    url: str, run_prefix: str, sizes: Sizes, streams: int, freeze: bool
) -> tuple[Tally, float, GcPauses]:
    """The streams' tally, the share of one core this process was busy while they ran
    (from the first emit to the last delivery or the drain timeout), and the garbage
    collector's pauses meanwhile. With ``freeze`` the replicas freeze the heap once
    started (``ReplicaSettings.freeze_heap_at_start``), and it is unfrozen afterwards
    so the next measurement starts as this one did."""
    settings = ReplicaSettings(freeze_heap_at_start=freeze)
    try:
        async with redis_replicas(url, 2, run_prefix=run_prefix, settings=settings) as redis_run:
            return await _drive_measured(redis_run, sizes, streams)
    finally:
        if freeze:
            gc.unfreeze()


async def _drive_measured(
    redis_run: RedisRun, sizes: Sizes, streams: int
) -> tuple[Tally, float, GcPauses]:
    producer, reader = redis_run.managers
    ids = [f"bench-{redis_run.token}-lat-{i}" for i in range(streams)]
    opened = await open_streams(producer, reader, ids)
    cpu, wall = time.process_time(), time.perf_counter()
    with recording_gc_pauses() as pauses:
        tally = await drive(
            producer,
            opened,
            events=int(sizes.latency_seconds * sizes.latency_rate_hz),
            period=1.0 / sizes.latency_rate_hz,
            drain_timeout=DRAIN_TIMEOUT_S,
        )
    busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return tally, busy, pauses


@dataclass(frozen=True, slots=True)
class _RawTally:
    published: int
    received: int
    #: PUBLISH→parsed-message latency of every message received, seconds, ascending.
    latencies: list[float]


async def _measure_raw(url: str, sizes: Sizes, streams: int) -> _RawTally:
    """The floor: paced raw PUBLISHes from one client to a subscriber on another."""
    token = new_token()
    channels = [f"bench-{token}-raw-lat-{i}" for i in range(streams)]
    events = int(sizes.latency_seconds * sizes.latency_rate_hz)
    period = 1.0 / sizes.latency_rate_hz
    latencies: list[float] = []
    published = 0
    async with (
        open_redis_client(url, client=bench_client()) as publisher,
        open_redis_client(url, client=bench_client()) as listener,
        listener.subscriber() as subscriber,
    ):
        for channel in channels:
            await subscriber.subscribe(channel)

        async def publish_paced(channel: str, first_slot: float) -> None:
            nonlocal published
            for index in range(events):
                await trio.sleep_until(first_slot + index * period)
                sent = time.perf_counter()
                prefix, suffix = encode_split("chunk", "g" * 32, delta(index, sent))
                await publisher.publish(channel, f"{prefix}{index}{suffix}")
                published += 1

        async with trio.open_nursery() as nursery:
            receiving = trio.CancelScope()
            nursery.start_soon(_receive_all, subscriber, streams * events, latencies, receiving)
            start = trio.current_time()
            async with trio.open_nursery() as loops:
                for i, channel in enumerate(channels):
                    loops.start_soon(publish_paced, channel, start + i * period / streams)
            receiving.deadline = trio.current_time() + DRAIN_TIMEOUT_S
    return _RawTally(published=published, received=len(latencies), latencies=sorted(latencies))


async def _receive_all(
    subscriber: Subscriber, expected: int, latencies: list[float], scope: trio.CancelScope
) -> None:
    with scope:
        while len(latencies) < expected:
            event = await subscriber.receive()
            if isinstance(event, PubSubMessage):
                sent_at = json.loads(event.data)["data"]["data"]["sentAt"]
                latencies.append(time.perf_counter() - sent_at)


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=True, run=run)
