"""``streamcheck bench``: the figures the issue asks for, measured, printed and written
to ``reports/bench-<UTC timestamp>.json``.

Five benchmarks (names for ``--only``): ``emit-cost`` (emit vs raw PUBLISH round trip),
``latency`` (emit→deliver across replicas, with losses), ``sim-speed`` (simulation
decisions and examples per second), ``idle-memory`` (per idle stream actor) and
``throughput`` (16 concurrent streams of awaited emits). Redis benchmarks are skipped,
with the reason, when Redis can't be reached. The test suite runs ``--quick`` only to
check that everything runs; no figure is ever asserted there.
"""

from streamcheck.properties.bench._model import BenchResult, Figure, Status
from streamcheck.properties.bench._redis import DEFAULT_REDIS_URL
from streamcheck.properties.bench._report import SCHEMA, BenchReport
from streamcheck.properties.bench._runner import (
    NAMES,
    BenchOptions,
    exit_code,
    parse_only,
    run_benchmarks,
)

__all__ = [
    "DEFAULT_REDIS_URL",
    "NAMES",
    "SCHEMA",
    "BenchOptions",
    "BenchReport",
    "BenchResult",
    "Figure",
    "Status",
    "exit_code",
    "parse_only",
    "run_benchmarks",
]
