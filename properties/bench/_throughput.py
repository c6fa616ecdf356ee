"""Benchmark 5: aggregate throughput, 16 streams x 500 awaited emits, every event logged.

LibreChat's benchmark (c) (docs/benchmarks.md, "The anchors"): 16 streams at once, each
awaiting its own emits, one publisher and one subscriber transport; chunks received per
second of wall time. Here the generators run on replica A and the clients on replica B,
and every emit also appends to the chunk log. The figure is chunks delivered to B's
clients per second, from the first emit to the last delivery, the median of a few
repetitions; losses and duplicates (by seq) are summed over all of them.

The baseline is measured in the same run against the same Redis: when ``node`` is on
``PATH``, the Node comparator (:mod:`._node`) runs the same shape on Node and ioredis,
raw awaited PUBLISH and LibreChat's per-event hot path (EVAL of INCR + EXPIRE +
PUBLISH, then XADD), and every figure is given as a ratio to them. Without node, raw
PUBLISH from 16 awaited loops on the bench's client (no log, no replica: this client's
ceiling) is the baseline. The same run on the in-process memory backend gives the Python ceiling.
Redis's CPU per logged event comes from ``INFO commandstats`` (the publish script's
EVALSHA microseconds, nested commands included, per event delivered).

The coalesced line runs the same shape with generators that queue their chunks
(``submit_chunk``) instead of awaiting each: every event still logged and sequenced on
its own, published in batches (one script call and one message per batch). It is
compared with Node's raw PUBLISH (issue 19, goal 2) and LibreChat path of the same
repetitions, and its Redis CPU per event is measured the same way (goal 5). Under CPU
contention (this process saturates a core, other work shares the machine) the server is
preempted inside commands and ``INFO commandstats`` counts that time too, so the batch
script is also measured alone: sequential calls of full batches to one stream, nothing
else in flight from this process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from streamcheck.impl import GenerationJobManager, Keys, MemoryBackend, open_replica
from streamcheck.impl.transport import (
    MAX_BATCH_EVENTS,
    EventKind,
    RedisBus,
    encode_body,
    encode_split,
)
from streamcheck.model import JSONValue
from streamcheck.properties.bench import _node
from streamcheck.properties.bench._model import (
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
DRAIN_TIMEOUT_S = 10.0
VS_LIBRECHAT = "logged events/s vs Node LibreChat path"
REDIS_CPU = "Redis CPU per logged event (publish script, INFO commandstats)"
MEMORY_CPU = "Python CPU per event (memory backend)"
COALESCED_VS_NODE_RAW = "coalesced logged events/s vs Node raw PUBLISH"
COALESCED_REDIS_CPU = "Redis CPU per logged event, coalesced (INFO commandstats)"
#: Sequential calls of the batch script in the "script alone" figure.
SCRIPT_ALONE_CALLS = 40
GOAL = Goal(
    text=(
        ">= 0.5x Node's LibreChat path (1.0x the aim), 0 lost, 0 duplicated; Redis CPU "
        "<= 15 µs per logged event; memory backend <= 15 µs of Python per event; "
        "coalesced: >= 1.0x Node's raw PUBLISH, Redis CPU <= 6 µs per logged event"
    ),
    checks=(
        Check(figure=VS_LIBRECHAT, op=Op.AT_LEAST, threshold=0.5),
        Check(figure="lost", op=Op.AT_MOST, threshold=0),
        Check(figure="duplicated", op=Op.AT_MOST, threshold=0),
        Check(figure=REDIS_CPU, op=Op.AT_MOST, threshold=15.0),
        Check(figure=MEMORY_CPU, op=Op.AT_MOST, threshold=15.0),
        Check(figure=COALESCED_VS_NODE_RAW, op=Op.AT_LEAST, threshold=1.0),
        Check(figure=COALESCED_REDIS_CPU, op=Op.AT_MOST, threshold=6.0),
    ),
)


@dataclass(frozen=True, slots=True)
class _Run:
    tally: Tally
    #: CPU seconds this process spent on the run (all threads), setup included.
    python_cpu_s: float
    #: Server microseconds spent in script calls (EVALSHA and EVAL, the commands they
    #: call included) during the run's streaming, and of those in INFO (the publish
    #: script's failover check); None on the memory backend.
    script_usec: float | None = None
    info_usec: float | None = None


def run(context: BenchContext) -> BenchResult:
    assert context.redis_url is not None
    url, prefix, sizes = context.redis_url, context.key_prefix, context.sizes
    reps = sizes.throughput_repetitions
    # Each repetition over Redis is followed at once by one of the Node comparator's,
    # so that both sides of a ratio see the machine in the same state (a shared machine's
    # speed swings within a minute).
    redis_runs: list[_Run] = []
    coalesced_runs: list[_Run] = []
    node_runs: list[_node.NodeComparison] = []
    prepared = _prepare_node()
    folder = prepared if isinstance(prepared, Path) else None
    node_unavailable = prepared if isinstance(prepared, str) else ""
    for _ in range(reps):
        redis_runs.append(_timed(_redis_once, url, prefix, sizes, False))
        coalesced_runs.append(_timed(_redis_once, url, prefix, sizes, True))
        if folder is not None and not node_unavailable:
            try:
                node_runs.append(trio.run(_node_run, url, prefix, sizes, folder))
            except _node.NodeUnavailable as exc:
                node_unavailable = " ".join(str(exc).split())
    memory_runs = [_timed(_memory_once, sizes, False) for _ in range(reps)]
    memory_coalesced_runs = [_timed(_memory_once, sizes, True) for _ in range(reps)]
    redis = [r.tally for r in redis_runs]
    memory = [r.tally for r in memory_runs]
    coalesced = [r.tally for r in coalesced_runs + memory_coalesced_runs]
    coalesced_rate = statistics.median(_rate(r.tally) for r in coalesced_runs)
    raw = trio.run(_raw_publish, url, prefix, sizes)
    script_alone = trio.run(_batch_script_alone, url, prefix)
    node = _node.median_of(node_runs) if node_runs and not node_unavailable else None
    client = bench_client()
    rate = statistics.median(_rate(t) for t in redis)
    memory_rate = statistics.median(_rate(t) for t in memory)
    redis_cpu_per_event = statistics.median(_per_event(r.script_usec, r) for r in redis_runs)
    info_per_event = statistics.median(_per_event(r.info_usec, r) for r in redis_runs)
    every = redis + memory + coalesced
    figures = [
        Figure(name="events/s (Redis)", value=rate, unit="events/s"),
        Figure(name="lost", value=sum(t.lost for t in every), unit="chunks"),
        Figure(name="duplicated", value=sum(t.duplicated for t in every), unit="chunks"),
        Figure(name="delivered (all runs)", value=sum(t.delivered for t in every), unit="chunks"),
        Figure(name="events/s (memory backend, reference)", value=memory_rate, unit="events/s"),
        Figure(
            name="Python CPU per event (Redis; both replicas, one process)",
            value=statistics.median(_cpu_per_event(run) for run in redis_runs),
            unit="µs",
        ),
        Figure(name=REDIS_CPU, value=redis_cpu_per_event, unit="µs"),
        Figure(
            name="of which INFO server (the failover check; Lua's parsing not included)",
            value=info_per_event,
            unit="µs",
        ),
        Figure(
            name="events/s one Redis core sustains at that cost",
            value=1e6 / redis_cpu_per_event if redis_cpu_per_event > 0 else 0.0,
            unit="events/s",
        ),
        Figure(
            name=MEMORY_CPU,
            value=statistics.median(_cpu_per_event(run) for run in memory_runs),
            unit="µs",
        ),
        Figure(name="coalesced events/s (Redis)", value=coalesced_rate, unit="events/s"),
        Figure(
            name="coalesced events/s (memory backend)",
            value=statistics.median(_rate(r.tally) for r in memory_coalesced_runs),
            unit="events/s",
        ),
        Figure(
            name="Python CPU per event, coalesced (Redis; both replicas, one process)",
            value=statistics.median(_cpu_per_event(run) for run in coalesced_runs),
            unit="µs",
        ),
        Figure(
            name=COALESCED_REDIS_CPU,
            value=statistics.median(_per_event(r.script_usec, r) for r in coalesced_runs),
            unit="µs",
        ),
        Figure(
            name="of which INFO server, coalesced",
            value=statistics.median(_per_event(r.info_usec, r) for r in coalesced_runs),
            unit="µs",
        ),
        Figure(
            name=(
                f"Redis CPU per logged event, batch script alone ({SCRIPT_ALONE_CALLS} "
                f"sequential calls of {MAX_BATCH_EVENTS} chunks)"
            ),
            value=script_alone,
            unit="µs",
        ),
        Figure(
            name="Python CPU per event, coalesced (memory backend)",
            value=statistics.median(_cpu_per_event(run) for run in memory_coalesced_runs),
            unit="µs",
        ),
        Figure(name=f"raw {client} PUBLISH, same concurrency", value=raw, unit="events/s"),
        Figure(
            name=f"logged events/s vs raw {client} PUBLISH",
            value=rate / raw if raw > 0 else 0.0,
            unit="x",
        ),
    ]
    if node is not None:
        librechat, node_raw = node.librechat.events_per_s, node.raw.events_per_s
        figures += [
            Figure(name="Node raw PUBLISH (no seq, no log)", value=node_raw, unit="events/s"),
            Figure(name="Node LibreChat path (EVAL + XADD)", value=librechat, unit="events/s"),
            Figure(name=VS_LIBRECHAT, value=rate / librechat, unit="x"),
            Figure(name="logged events/s vs Node raw PUBLISH", value=rate / node_raw, unit="x"),
            Figure(name=COALESCED_VS_NODE_RAW, value=coalesced_rate / node_raw, unit="x"),
            Figure(
                name="coalesced logged events/s vs Node LibreChat path",
                value=coalesced_rate / librechat,
                unit="x",
            ),
            Figure(
                name="memory backend events/s vs Node raw PUBLISH",
                value=memory_rate / node_raw,
                unit="x",
            ),
            Figure(
                name=f"raw {client} PUBLISH vs Node raw PUBLISH", value=raw / node_raw, unit="x"
            ),
            Figure(
                name="Node events lost (both paths, all runs)",
                value=sum(line.expected - line.delivered for line in (node.raw, node.librechat)),
                unit="chunks",
            ),
        ]
        baseline = Baseline(
            name="Node LibreChat path",
            value=librechat,
            unit="events/s",
            source=f"measured in this run: Node {node.node_version}, ioredis, same Redis",
        )
    else:
        baseline = Baseline(
            name=f"raw {client} PUBLISH",
            value=raw,
            unit="events/s",
            source=f"measured in this run (no Node comparator: {node_unavailable})",
        )
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures),
        baseline=baseline,
        ratio=rate / baseline.value if baseline.value > 0 else 0.0,
        goal=GOAL,
        headline="events/s (Redis)",
        notes=(
            f"{sizes.throughput_streams} streams x {sizes.throughput_events} awaited emits, "
            f"median of {sizes.throughput_repetitions} repetition(s) per backend; "
            "generators on replica A, clients on replica B, one Python thread; "
            "coalesced: the same with every chunk queued by submit_chunk, not awaited",
            "Python CPU per event: the process's CPU over a whole run, its setup "
            "included, per chunk delivered",
            "Redis CPU per logged event: INFO commandstats EVALSHA + EVAL microseconds "
            "(server-wide: other clients' scripts count too) per chunk delivered",
            *(f"{t.refused} emits refused by the fence" for t in every if t.refused),
            *(f"{t.unterminated} clients missed the terminal" for t in every if t.unterminated),
        ),
    )


def _prepare_node() -> Path | str:
    """The Node comparator's folder, or why it cannot run."""
    try:
        return _node.prepare()
    except (_node.NodeUnavailable, OSError) as exc:
        return " ".join(str(exc).split())


async def _node_run(url: str, run_prefix: str, sizes: Sizes, folder: Path) -> _node.NodeComparison:
    """One repetition of both Node paths, under a fresh key prefix deleted after."""
    async with redis_replicas(url, 0, run_prefix=run_prefix) as redis_run:
        prefix, suffix = encode_split("chunk", "g" * 32, delta(0, 0.0))
        return await _node.compare(
            url=url,
            prefix=redis_run.prefix,
            token=redis_run.token,
            envelope=f"{prefix}1{suffix}",
            streams=sizes.throughput_streams,
            events=sizes.throughput_events,
            repetitions=1,
            folder=folder,
        )


def _timed(main: Callable[..., Awaitable[tuple[Tally, _ServerUsec | None]]], *args: object) -> _Run:
    started = time.process_time()
    tally, usec = trio.run(main, *args)
    cpu = time.process_time() - started
    if usec is None:
        return _Run(tally, cpu)
    return _Run(tally, cpu, usec.scripts, usec.info)


def _cpu_per_event(run: _Run) -> float:
    return run.python_cpu_s / run.tally.delivered * 1e6 if run.tally.delivered else 0.0


def _per_event(usec: float | None, run: _Run) -> float:
    """Server microseconds per chunk delivered (0.0 when not measured)."""
    if usec is None or not run.tally.delivered:
        return 0.0
    return usec / run.tally.delivered


def _rate(tally: Tally) -> float:
    return tally.delivered / tally.seconds if tally.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _ServerUsec:
    """Server microseconds so far (``INFO commandstats``), server-wide: in script calls
    (EVALSHA and EVAL, the commands they call included), and in INFO."""

    scripts: float
    info: float

    def __sub__(self, other: _ServerUsec) -> _ServerUsec:
        return _ServerUsec(self.scripts - other.scripts, self.info - other.info)


async def _redis_once(
    url: str, run_prefix: str, sizes: Sizes, coalesced: bool
) -> tuple[Tally, _ServerUsec]:
    async with redis_replicas(url, 2, run_prefix=run_prefix) as redis_run:
        producer, reader = redis_run.managers
        before = await server_usec(redis_run.admin.raw)
        tally = await _stream_all(producer, reader, redis_run.token, sizes, coalesced)
        return tally, await server_usec(redis_run.admin.raw) - before


async def server_usec(client: Any) -> _ServerUsec:
    stats = await client.info("commandstats")

    def usec(name: str) -> float:
        return float((stats.get(f"cmdstat_{name}") or {}).get("usec", 0))

    return _ServerUsec(scripts=usec("evalsha") + usec("eval"), info=usec("info"))


async def _memory_once(sizes: Sizes, coalesced: bool) -> tuple[Tally, None]:
    backend = MemoryBackend()
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(open_replica(backend))
        reader = await stack.enter_async_context(open_replica(backend))
        return await _stream_all(producer, reader, new_token(), sizes, coalesced), None


async def _stream_all(
    producer: GenerationJobManager,
    reader: GenerationJobManager,
    token: str,
    sizes: Sizes,
    coalesced: bool,
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
        coalesced=coalesced,
    )


@dataclass(frozen=True, slots=True)
class _QueuedChunk:
    """A chunk as the batch script takes it (what a stream actor queues)."""

    kind: EventKind
    body: JSONValue
    encoded: str
    by_abort: bool = False


async def _batch_script_alone(url: str, run_prefix: str) -> float:
    """Server microseconds per event of the batch script called alone: full batches of
    LibreChat-shaped chunks to one stream, one call after the other (``INFO
    commandstats``, server-wide, as the other Redis CPU figures)."""
    async with redis_replicas(url, 0, run_prefix=run_prefix) as redis_run:
        keys = Keys(redis_run.prefix)
        stream_id = f"bench-{redis_run.token}-script"
        generation = "g" * 32
        await redis_run.admin.raw.hset(
            keys.job(stream_id), {"generationId": generation, "status": "running"}
        )
        bus = RedisBus(redis_run.admin, keys=keys)
        body = delta(0, 0.0)
        chunk = _QueuedChunk(EventKind.CHUNK, body, encode_body(body))
        events = [chunk] * MAX_BATCH_EVENTS
        before = await server_usec(redis_run.admin.raw)
        for _ in range(SCRIPT_ALONE_CALLS):
            await bus.publish_batch(stream_id, generation=generation, events=events, floor=0)
        spent = await server_usec(redis_run.admin.raw) - before
    return spent.scripts / (SCRIPT_ALONE_CALLS * MAX_BATCH_EVENTS)


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
