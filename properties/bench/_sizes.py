"""How big each benchmark runs: the issue's sizes, and ``--quick`` ones for a smoke run.

``--quick`` exists so the test suite can check that every benchmark runs end to end in
seconds; its figures are too small to judge a goal by (a goal whose sizes quick mode
does not reach is reported as not evaluated).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    #: emit-cost: alternating rounds of emits and raw PUBLISHes, ops per round and side,
    #: and warm-up ops per side (script load, connection pool, code paths).
    emit_rounds: int
    emit_ops: int
    emit_warmup: int
    #: latency: concurrent stream counts, seconds of paced emits per count, rate per stream.
    latency_streams: tuple[int, ...]
    latency_seconds: float
    latency_rate_hz: float
    #: sim-speed: Hypothesis examples of the state machine.
    sim_examples: int
    #: idle-memory: stream actors started and left idle.
    idle_actors: int
    #: throughput: concurrent streams, awaited events per stream, repetitions (median).
    throughput_streams: int
    throughput_events: int
    throughput_repetitions: int


FULL = Sizes(
    emit_rounds=7,
    emit_ops=500,
    emit_warmup=300,
    latency_streams=(1, 16, 64, 256),
    latency_seconds=5.0,
    latency_rate_hz=20.0,
    sim_examples=400,
    idle_actors=10_000,
    throughput_streams=16,
    throughput_events=500,
    throughput_repetitions=3,
)

QUICK = Sizes(
    emit_rounds=2,
    emit_ops=100,
    emit_warmup=50,
    latency_streams=(1, 16),
    latency_seconds=1.0,
    latency_rate_hz=20.0,
    sim_examples=5,
    idle_actors=1_000,
    throughput_streams=16,
    throughput_events=50,
    throughput_repetitions=1,
)
