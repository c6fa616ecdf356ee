"""What a real-Redis tier run prints and writes: one row of figures per fault kind."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamcheck.properties.realredis._harness import (
    Backend,
    FaultFigures,
    Profile,
    RunResult,
    percentile,
)

SCHEMA = "streamcheck.realredis/1"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def run_line(result: RunResult) -> str:
    """One line per run, printed as it finishes (a long soak shows progress)."""
    verdict = "ok" if result.report.ok and not result.agent_failures else "ANOMALY"
    kinds = ", ".join(f"{k.value} {n}" for k, n in sorted(result.report.by_kind().items()))
    extra = f" ({kinds})" if kinds else ""
    failed = f"; agents: {'; '.join(result.agent_failures)}" if result.agent_failures else ""
    kept = f"\n      evidence: {result.kept}" if result.kept is not None else ""
    # A plan answered late moved the heal window by as much (a slow server, a loaded machine).
    late = f", plan {result.plan_late_s:.1f} s late" if result.plan_late_s >= 1.0 else ""
    return (
        f"  {result.fault.value:<20} seed {result.seed:<4} {result.events:>6} events "
        f"{result.seconds:5.1f} s{late}  {verdict}{extra}{failed}{kept}"
    )


def table(figures: Sequence[FaultFigures]) -> str:
    header = (
        f"{'fault':<20} {'runs':>4} {'events':>7} {'faults':>6} {'anomalies':<22} "
        f"{'abort p50/p99 ms':>16} {'resume p50/p99 ms':>17}"
    )
    lines = [header, "-" * len(header)]
    for f in figures:
        anomalies = ", ".join(f"{k} {n}" for k, n in sorted(f.anomalies.items())) or "0"
        abort = f"{_ms(percentile(f.abort_latencies_s, 0.5))}/"
        abort += _ms(percentile(f.abort_latencies_s, 0.99))
        resume = f"{_ms(percentile(f.resume_latencies_s, 0.5))}/"
        resume += _ms(percentile(f.resume_latencies_s, 0.99))
        lines.append(
            f"{f.fault.value:<20} {f.runs:>4} {f.events:>7} {f.faults_injected:>6} "
            f"{anomalies:<22} {abort:>16} {resume:>17}"
        )
    return "\n".join(lines)


def to_json(
    backend: Backend, profile: Profile, seed: int, figures: Sequence[FaultFigures], seconds: float
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": backend.value,
        "profile": profile.name,
        "replicas": profile.workload.replicas,
        "seed": seed,
        "seconds": round(seconds, 1),
        "implementation": next((f.implementation for f in figures if f.implementation), ""),
        "not_exercised": next((f.not_exercised for f in figures if f.not_exercised), []),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "faults": [
            {
                "fault": f.fault.value,
                "runs": f.runs,
                "events": f.events,
                "faults_injected": f.faults_injected,
                "anomalies": dict(sorted(f.anomalies.items())),
                "abort_latency_ms": _percentiles(f.abort_latencies_s),
                "resume_latency_ms": _percentiles(f.resume_latencies_s),
                "agent_failures": f.agent_failures,
                "failing_seeds": f.failing_seeds,
            }
            for f in figures
        ],
    }


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    def ms(q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 1)

    return {"samples": len(values), "p50": ms(0.5), "p99": ms(0.99)}


def write(report: dict[str, Any], reports: Path) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = reports / f"realredis-{report['backend']}-{stamp}.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True))
    return path
