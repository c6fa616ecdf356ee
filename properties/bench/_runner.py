"""Choosing, running and reporting the benchmarks (``streamcheck bench``)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from streamcheck.properties.bench import (
    _emit_cost,
    _idle_memory,
    _latency,
    _sim_speed,
    _throughput,
)
from streamcheck.properties.bench._model import (
    BenchContext,
    Benchmark,
    BenchResult,
    Status,
    describe_error,
    skipped,
)
from streamcheck.properties.bench._redis import (
    DEFAULT_REDIS_URL,
    RedisProbe,
    new_run_prefix,
    probe_redis,
)
from streamcheck.properties.bench._report import (
    BenchReport,
    Machine,
    TimedResult,
    now_utc,
    render_header,
    render_result,
    render_summary,
    write_report,
)
from streamcheck.properties.bench._sizes import FULL, QUICK

#: In the issue's order.
BENCHMARKS: tuple[Benchmark, ...] = (
    _emit_cost.BENCHMARK,
    _latency.BENCHMARK,
    _sim_speed.BENCHMARK,
    _idle_memory.BENCHMARK,
    _throughput.BENCHMARK,
)
NAMES: tuple[str, ...] = tuple(b.name for b in BENCHMARKS)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    quick: bool = False
    redis_url: str = DEFAULT_REDIS_URL
    #: Benchmark names to run; empty runs them all.
    only: tuple[str, ...] = ()
    reports: Path = Path("reports")


def parse_only(text: str) -> tuple[str, ...]:
    """``"emit-cost,latency"`` → the names, checked; raises ``ValueError`` naming any
    unknown one and the known ones."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(
            f"unknown benchmark {', '.join(map(repr, unknown))}; known: {', '.join(NAMES)}"
        )
    return names


def run_benchmarks(options: BenchOptions, *, out: TextIO | None = None) -> tuple[BenchReport, Path]:
    """Run the chosen benchmarks, print each as it finishes and a summary (to ``out``,
    default stdout), write the JSON report; returns it and its path. Raises ``OSError``
    if the report can't be written."""
    # Looked up per call, not bound as a default: tests and callers replace sys.stdout.
    out = out if out is not None else sys.stdout
    chosen = [b for b in BENCHMARKS if not options.only or b.name in options.only]
    started = time.perf_counter()
    date = now_utc()
    probe = probe_redis(options.redis_url) if any(b.needs_redis for b in chosen) else None
    machine = Machine.here(
        redis_url=options.redis_url,
        redis_version=probe.version if probe is not None else None,
    )
    print(render_header(date, options.quick, machine), file=out)
    if probe is not None and probe.unavailable is not None:
        print(f"Redis unreachable, its benchmarks are skipped: {probe.unavailable}", file=out)
    context = BenchContext(
        sizes=QUICK if options.quick else FULL,
        quick=options.quick,
        redis_url=options.redis_url if probe is not None and probe.unavailable is None else None,
        key_prefix=new_run_prefix(),
    )
    results: list[TimedResult] = []
    for benchmark in chosen:
        print(f"\n[{benchmark.name}] running ...", file=out, flush=True)
        timed = _run_one(benchmark, context, probe)
        results.append(timed)
        print(render_result(timed), file=out, flush=True)
    report = BenchReport(
        date=date,
        quick=options.quick,
        seconds=time.perf_counter() - started,
        machine=machine,
        results=tuple(results),
        redis_key_prefix=context.key_prefix if context.redis_url is not None else None,
    )
    print(f"\nsummary ({report.seconds:.1f} s)\n{render_summary(report)}", file=out)
    path = write_report(report, options.reports)
    print(f"\nwrote {path}", file=out)
    return report, path


def _run_one(benchmark: Benchmark, context: BenchContext, probe: RedisProbe | None) -> TimedResult:
    started = time.perf_counter()
    result: BenchResult
    if benchmark.needs_redis and context.redis_url is None:
        reason = probe.unavailable if probe is not None else None
        result = skipped(
            benchmark.name, benchmark.title, reason or "Redis was not reached", benchmark.goal
        )
    else:
        try:
            result = benchmark.run(context)
        except Exception as exc:  # reported, and the other benchmarks still run
            result = BenchResult(
                name=benchmark.name,
                title=benchmark.title,
                status=Status.ERROR,
                reason=describe_error(exc),
                goal=benchmark.goal,
            )
    return TimedResult(result=result, seconds=time.perf_counter() - started)


def exit_code(report: BenchReport) -> int:
    """0 when every chosen benchmark ran (or was skipped for want of Redis), 2 when one
    could not finish (an environment problem such as Redis going away mid-run)."""
    failed = any(t.result.status is Status.ERROR for t in report.results)
    return 2 if failed else 0
