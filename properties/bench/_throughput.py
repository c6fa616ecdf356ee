"""Benchmark 5: aggregate throughput, 16 streams x 500 awaited emits, every event logged.

LibreChat's benchmark (c) (docs/benchmarks.md, "The anchors"): 16
streams at once, each awaiting its own emits, one publisher and one subscriber
transport; chunks received per second of wall time. Here the generators run on replica
A and the clients on replica B, and every emit also appends to the chunk log (which
LibreChat's transport did not). The figure is chunks delivered to B's clients per
second, from the first emit to the last delivery, the median of a few repetitions;
losses and duplicates (by seq) are summed over all of them.

LibreChat's figure is a documented constant, not measured here: 65,000 events/s, the
low end of its 65k-73k across the July variants on a 2-vCPU machine like this one. For
reference the same run is also measured on the in-process memory backend, and raw
coredis PUBLISH from 16 awaited loops (no log, no replica) shows this client's ceiling.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import trio

from streamcheck.impl import GenerationJobManager, MemoryBackend, open_replica
from streamcheck.impl.transport import encode_split
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
from streamcheck.properties.bench._redis import bench_client, new_token, redis_replicas
from streamcheck.properties.bench._sizes import Sizes
from streamcheck.properties.bench._streams import Tally, delta, drive, open_streams

NAME = "throughput"
TITLE = "aggregate throughput, concurrent streams of awaited emits, every event logged"
LIBRECHAT_EVENTS_PER_S = 65_000.0
LIBRECHAT_SOURCE = (
    'documented constant, not measured here: docs/benchmarks.md, "The anchors", '
    "LibreChat TS transport 65k-73k events/s without the log append"
)
DRAIN_TIMEOUT_S = 10.0
GOAL = Goal(
    text=">= 0.5x LibreChat's 65,000 events/s; 0 lost, 0 duplicated",
    checks=(
        Check(figure=RATIO, op=Op.AT_LEAST, threshold=0.5),
        Check(figure="lost", op=Op.AT_MOST, threshold=0),
        Check(figure="duplicated", op=Op.AT_MOST, threshold=0),
    ),
)


@dataclass(frozen=True, slots=True)
class _Run:
    tally: Tally
    #: CPU seconds this process spent on the run (all threads), setup included.
    python_cpu_s: float
    #: CPU seconds the Redis server spent during the run's streaming (``INFO cpu``,
    #: user + system, server-wide); None on the memory backend.
    redis_cpu_s: float | None = None


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    url, prefix, sizes = context.redis_url, context.key_prefix, context.sizes
    reps = sizes.throughput_repetitions
    redis_runs = [_timed(_redis_once, url, prefix, sizes) for _ in range(reps)]
    memory_runs = [_timed(_memory_once, sizes) for _ in range(reps)]
    redis = [r.tally for r in redis_runs]
    memory = [r.tally for r in memory_runs]
    raw = trio.run(_raw_publish, url, prefix, sizes)
    rate = statistics.median(_rate(t) for t in redis)
    redis_cpu_per_event = statistics.median(_redis_cpu_per_event(r) for r in redis_runs)
    every = redis + memory
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=(
            Figure(name="events/s (Redis)", value=rate, unit="events/s"),
            Figure(name="lost", value=sum(t.lost for t in every), unit="chunks"),
            Figure(name="duplicated", value=sum(t.duplicated for t in every), unit="chunks"),
            Figure(
                name="delivered (all runs)",
                value=sum(t.delivered for t in every),
                unit="chunks",
            ),
            Figure(
                name="events/s (memory backend, reference)",
                value=statistics.median(_rate(t) for t in memory),
                unit="events/s",
            ),
            Figure(
                name="Python CPU per event (Redis; both replicas, one process)",
                value=statistics.median(_cpu_per_event(run) for run in redis_runs),
                unit="µs",
            ),
            Figure(
                name="Redis server CPU per event (script, log, fan-out)",
                value=redis_cpu_per_event * 1e6,
                unit="µs",
            ),
            Figure(
                name="events/s one Redis core sustains at that cost",
                value=1 / redis_cpu_per_event if redis_cpu_per_event > 0 else 0.0,
                unit="events/s",
            ),
            Figure(
                name="Python CPU per event (memory backend)",
                value=statistics.median(_cpu_per_event(run) for run in memory_runs),
                unit="µs",
            ),
            Figure(
                name=f"raw {bench_client()} PUBLISH, same concurrency (reference)",
                value=raw,
                unit="events/s",
            ),
            Figure(
                name="logged events vs raw PUBLISH, same concurrency",
                value=rate / raw if raw > 0 else 0.0,
                unit="x",
            ),
        ),
        baseline=Baseline(
            name="LibreChat TS transport",
            value=LIBRECHAT_EVENTS_PER_S,
            unit="events/s",
            source=LIBRECHAT_SOURCE,
        ),
        ratio=rate / LIBRECHAT_EVENTS_PER_S,
        goal=GOAL,
        notes=(
            f"{sizes.throughput_streams} streams x {sizes.throughput_events} awaited emits, "
            f"median of {sizes.throughput_repetitions} repetition(s) per backend; "
            "generators on replica A, clients on replica B, one Python thread",
            "Python CPU per event: the process's CPU over a whole run, its setup "
            "included, per chunk delivered",
            "Redis server CPU per event: INFO cpu (user + system) read before and after "
            "the streaming, server-wide, per chunk delivered; the goal needs Redis alone to "
            "sustain 32,500 events/s",
            *(f"{t.refused} emits refused by the fence" for t in every if t.refused),
            *(f"{t.unterminated} clients missed the terminal" for t in every if t.unterminated),
        ),
    )


def _timed(main: Callable[..., Awaitable[tuple[Tally, float | None]]], *args: object) -> _Run:
    started = time.process_time()
    tally, redis_cpu_s = trio.run(main, *args)
    return _Run(tally, time.process_time() - started, redis_cpu_s)


def _cpu_per_event(run: _Run) -> float:
    return run.python_cpu_s / run.tally.delivered * 1e6 if run.tally.delivered else 0.0


def _redis_cpu_per_event(run: _Run) -> float:
    """Server CPU seconds per chunk delivered (0.0 when not measured)."""
    if run.redis_cpu_s is None or not run.tally.delivered:
        return 0.0
    return run.redis_cpu_s / run.tally.delivered


def _rate(tally: Tally) -> float:
    return tally.delivered / tally.seconds if tally.seconds > 0 else 0.0


async def _redis_once(url: str, run_prefix: str, sizes: Sizes) -> tuple[Tally, float]:
    async with redis_replicas(url, 2, run_prefix=run_prefix) as redis_run:
        producer, reader = redis_run.managers
        before = await _server_cpu_s(redis_run.admin.raw)
        tally = await _stream_all(producer, reader, redis_run.token, sizes)
        return tally, await _server_cpu_s(redis_run.admin.raw) - before


async def _server_cpu_s(client: Any) -> float:
    """CPU seconds the Redis server has used so far, user and system, all its threads."""
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _memory_once(sizes: Sizes) -> tuple[Tally, None]:
    backend = MemoryBackend()
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(open_replica(backend))
        reader = await stack.enter_async_context(open_replica(backend))
        return await _stream_all(producer, reader, new_token(), sizes), None


async def _stream_all(
    producer: GenerationJobManager, reader: GenerationJobManager, token: str, sizes: Sizes
) -> Tally:
    """Every stream's generator on ``producer``, its client on ``reader``, all at once."""
    ids = [f"bench-{token}-tp-{i}" for i in range(sizes.throughput_streams)]
    streams = await open_streams(producer, reader, ids)
    return await drive(
        producer,
        streams,
        events=sizes.throughput_events,
        period=None,
        drain_timeout=DRAIN_TIMEOUT_S,
    )


async def _raw_publish(url: str, run_prefix: str, sizes: Sizes) -> float:
    """PUBLISHes per second from as many awaited loops as there are streams (no
    subscriber: this is the client's and the server's ceiling, not a transport)."""
    async with redis_replicas(url, 0, run_prefix=run_prefix) as redis_run:
        publish = redis_run.raw_publish
        prefix, suffix = encode_split("chunk", "g" * 32, delta(0, 0.0))

        async def loop(channel: str) -> None:
            for i in range(sizes.throughput_events):
                await publish(channel, f"{prefix}{i}{suffix}")

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(sizes.throughput_streams):
                nursery.start_soon(loop, f"bench-{redis_run.token}-raw-{i}")
        seconds = time.perf_counter() - started
    return sizes.throughput_streams * sizes.throughput_events / seconds


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=True, run=run)
