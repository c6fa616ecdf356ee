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
benchmark's back-to-back runs.
"""

from __future__ import annotations

import time

import trio

from properties.bench._model import (
    BenchContext,
    Benchmark,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
    percentile,
)
from properties.bench._redis import redis_replicas
from properties.bench._sizes import Sizes
from properties.bench._streams import Tally, drive, open_streams

NAME = "latency"
TITLE = "emit->deliver latency across replicas over Redis, 20 events/s per stream"
#: Long enough for a reorder timeout (0.5 s) and a log repair after the last emit.
DRAIN_TIMEOUT_S = 5.0
TARGET_STREAMS = 256
GOAL = Goal(
    text=f"p99 <= 2 ms at {TARGET_STREAMS} streams on loopback; 0 lost, 0 duplicated",
    checks=(
        Check(figure=f"p99 @ {TARGET_STREAMS} streams", op=Op.AT_MOST, threshold=2.0),
        Check(figure="lost (all runs)", op=Op.AT_MOST, threshold=0),
        Check(figure="duplicated (all runs)", op=Op.AT_MOST, threshold=0),
    ),
)


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    url, prefix, sizes = context.redis_url, context.key_prefix, context.sizes
    tallies: list[tuple[int, Tally]] = []
    busy: dict[int, float] = {}
    for n in sizes.latency_streams:
        tally, busy[n] = trio.run(_measure, url, prefix, sizes, n)
        tallies.append((n, tally))
    figures: list[Figure] = []
    notes: list[str] = [
        f"{sizes.latency_seconds:g} s of paced emits per stream count, "
        f"{int(sizes.latency_seconds * sizes.latency_rate_hz)} chunks per stream; "
        "both replicas, generators and clients share one Python thread"
    ]
    for n, tally in tallies:
        latencies_ms = [x * 1000 for x in tally.latencies]
        at = f"@ {n} stream{'s' if n != 1 else ''}"
        if latencies_ms:
            figures += [
                Figure(name=f"p50 {at}", value=percentile(latencies_ms, 0.50), unit="ms"),
                Figure(name=f"p99 {at}", value=percentile(latencies_ms, 0.99), unit="ms"),
                Figure(name=f"max {at}", value=latencies_ms[-1], unit="ms"),
            ]
        figures += [
            Figure(name=f"delivered {at}", value=tally.delivered, unit="chunks"),
            Figure(name=f"lost {at}", value=tally.lost, unit="chunks"),
            Figure(name=f"duplicated {at}", value=tally.duplicated, unit="chunks"),
            Figure(name=f"generator lag max {at}", value=tally.max_lag * 1000, unit="ms"),
            Figure(name=f"Python CPU busy {at}", value=busy[n] * 100, unit="% of a core"),
            Figure(
                name=f"achieved emit rate {at}",
                value=tally.emitted / tally.emit_seconds if tally.emit_seconds else 0.0,
                unit="events/s",
            ),
        ]
        offered = n * sizes.latency_rate_hz
        notes.append(f"{at}: offered {offered:,.0f} events/s in total")
        notes += _anomaly_notes(at, tally)
    figures += [
        Figure(name="lost (all runs)", value=sum(t.lost for _, t in tallies), unit="chunks"),
        Figure(
            name="duplicated (all runs)",
            value=sum(t.duplicated for _, t in tallies),
            unit="chunks",
        ),
    ]
    largest = max(sizes.latency_streams)
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures),
        goal=GOAL,
        notes=tuple(notes),
        headline=f"p99 @ {largest} stream{'s' if largest != 1 else ''}",
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


async def _measure(url: str, run_prefix: str, sizes: Sizes, streams: int) -> tuple[Tally, float]:
    """The streams' tally, and the share of one core this process was busy while they
    ran (from the first emit to the last delivery or the drain timeout)."""
    async with redis_replicas(url, 2, run_prefix=run_prefix) as redis_run:
        producer, reader = redis_run.managers
        ids = [f"bench-{redis_run.token}-lat-{i}" for i in range(streams)]
        opened = await open_streams(producer, reader, ids)
        cpu, wall = time.process_time(), time.perf_counter()
        tally = await drive(
            producer,
            opened,
            events=int(sizes.latency_seconds * sizes.latency_rate_hz),
            period=1.0 / sizes.latency_rate_hz,
            drain_timeout=DRAIN_TIMEOUT_S,
        )
        busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
        return tally, busy


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=True, run=run)
