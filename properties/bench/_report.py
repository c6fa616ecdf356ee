"""The bench report: one JSON file per run under ``reports/`` and a table on stdout.

JSON schema ``streamcheck.bench/1``::

    {"schema": "streamcheck.bench/1", "date": "<ISO 8601 UTC>", "quick": bool,
     "seconds": <wall seconds of the whole run>,
     "machine": {"cpu_count", "cpu_model", "python", "platform", "redis_url" (password
                 redacted), "redis_version" (null if Redis was not reached)},
     "redis_key_prefix": every key the run wrote began with it (null: Redis not used),
     "results": [{"name", "title", "status": "measured" | "skipped" | "error",
                  "reason" (why skipped or failed, else null), "seconds",
                  "figures": [{"name", "value", "unit"}],
                  "baseline": {"name", "value", "unit", "source"} | null,
                  "ratio": number | null,
                  "goal": {"text", "checks": [{"figure", "op", "threshold"}]} | null,
                  "met": true | false | null (not evaluated),
                  "unmeasured": [figures the goal needs that this run did not measure],
                  "notes": [str]}]}
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamcheck.impl import redact_uri_list
from streamcheck.properties.bench._model import RATIO, BenchResult, Status

SCHEMA = "streamcheck.bench/1"
#: Units whose values are counts, printed without decimals.
COUNT_UNITS = frozenset({"chunks", "calls", "actors", "steps", "examples", "collections"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    cpu_count: int | None
    cpu_model: str | None
    python: str
    platform: str
    redis_url: str
    redis_version: str | None

    @classmethod
    def here(cls, *, redis_url: str, redis_version: str | None) -> Machine:
        return cls(
            cpu_count=os.cpu_count(),
            cpu_model=_cpu_model(),
            python=platform.python_version(),
            platform=platform.platform(),
            redis_url=redact_uri_list(redis_url),
            redis_version=redis_version,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedResult:
    result: BenchResult
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchReport:
    date: datetime
    quick: bool
    seconds: float
    machine: Machine
    results: tuple[TimedResult, ...]
    #: The prefix of every Redis key the run wrote (all deleted afterwards); None if
    #: Redis was not used.
    redis_key_prefix: str | None = None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def to_json(report: BenchReport) -> dict[str, Any]:
    m = report.machine
    return {
        "schema": SCHEMA,
        "date": report.date.isoformat(timespec="seconds"),
        "quick": report.quick,
        "seconds": round(report.seconds, 3),
        "machine": {
            "cpu_count": m.cpu_count,
            "cpu_model": m.cpu_model,
            "python": m.python,
            "platform": m.platform,
            "redis_url": m.redis_url,
            "redis_version": m.redis_version,
        },
        "redis_key_prefix": report.redis_key_prefix,
        "results": [_result_json(t) for t in report.results],
    }


def _result_json(timed: TimedResult) -> dict[str, Any]:
    r = timed.result
    return {
        "name": r.name,
        "title": r.title,
        "status": r.status.value,
        "reason": r.reason,
        "seconds": round(timed.seconds, 3),
        "figures": [{"name": f.name, "value": f.value, "unit": f.unit} for f in r.figures],
        "baseline": (
            None
            if r.baseline is None
            else {
                "name": r.baseline.name,
                "value": r.baseline.value,
                "unit": r.baseline.unit,
                "source": r.baseline.source,
            }
        ),
        "ratio": r.ratio,
        "goal": (
            None
            if r.goal is None
            else {
                "text": r.goal.text,
                "checks": [
                    {"figure": c.figure, "op": c.op.value, "threshold": c.threshold}
                    for c in r.goal.checks
                ],
            }
        ),
        "met": r.met(),
        "unmeasured": r.unmeasured_checks() if r.status is Status.MEASURED else [],
        "notes": list(r.notes),
    }


def write_report(report: BenchReport, directory: Path) -> Path:
    """Write ``bench-<UTC timestamp>.json`` into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{report.date.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    return path


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- text ---------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if unit in COUNT_UNITS or abs(value) >= 100:
        number = f"{value:,.0f}"
    elif abs(value) >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.3f}"
    return f"{number} {unit}"


def format_ratio(result: BenchResult) -> str:
    """The ratio to two decimals, or more where two would print the goal's threshold
    for a ratio that is not exactly it (1.3026 beside a 1.3 goal reads "1.303x")."""
    ratio = result.ratio
    if ratio is None:
        return "-"
    thresholds = (
        [c.threshold for c in result.goal.checks if c.figure == RATIO] if result.goal else []
    )
    text = f"{ratio:.2f}"
    for digits in (3, 4):
        if not any(float(text) == t != ratio for t in thresholds):
            break
        text = f"{ratio:.{digits}f}"
    return f"{text}x"


def verdict(result: BenchResult) -> str:
    if result.status is Status.SKIPPED:
        return "skipped"
    if result.status is Status.ERROR:
        return "ERROR"
    met = result.met()
    if met is True:
        return "met"
    if met is False:
        return "NOT MET"
    missing = result.unmeasured_checks()
    return f"not evaluated ({', '.join(missing)} not measured)" if missing else "no goal"


def render_header(report_date: datetime, quick: bool, machine: Machine) -> str:
    redis = (
        f"Redis {machine.redis_version} at {machine.redis_url}"
        if machine.redis_version is not None
        else f"Redis at {machine.redis_url} not used"
    )
    mode = "quick (sizes too small to judge every goal)" if quick else "full"
    return (
        f"streamcheck bench, {report_date.strftime('%Y-%m-%d %H:%M:%S')} UTC, {mode}\n"
        f"machine: {machine.cpu_count} CPUs ({machine.cpu_model or 'unknown model'}), "
        f"Python {machine.python}, {redis}"
    )


def render_result(timed: TimedResult) -> str:
    """One benchmark's block: figures, baseline, ratio, goal and verdict."""
    r = timed.result
    lines = [f"{r.name}: {r.title}"]
    if r.status is not Status.MEASURED:
        lines.append(f"  {verdict(r)}: {r.reason}")
        return "\n".join(lines)
    width = max([len(f.name) for f in r.figures] + [len("baseline"), 24])
    for figure in r.figures:
        lines.append(f"  {figure.name:<{width}}  {format_value(figure.value, figure.unit)}")
    if r.baseline is not None:
        b = r.baseline
        lines.append(
            f"  {'baseline':<{width}}  {format_value(b.value, b.unit)}  {b.name} ({b.source})"
        )
    if r.ratio is not None:
        lines.append(f"  {RATIO:<{width}}  {format_ratio(r)}")
    if r.goal is not None:
        lines.append(f"  {'goal':<{width}}  {r.goal.text}: {verdict(r)}")
    lines += [f"  note: {note}" for note in r.notes]
    lines.append(f"  ({timed.seconds:.1f} s)")
    return "\n".join(lines)


def render_summary(report: BenchReport) -> str:
    rows = [("benchmark", "key figure", "goal", "result")]
    for timed in report.results:
        r = timed.result
        rows.append((r.name, key_figure(r), r.goal.text if r.goal else "", verdict(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"
        for row in rows
    )


def key_figure(result: BenchResult) -> str:
    """The result's headline figure (with its ratio to the baseline, if any), else the
    ratio, else the first figure its goal judges, else its first figure."""
    if result.status is not Status.MEASURED:
        return "-"
    ratio = None
    if result.ratio is not None and result.baseline is not None:
        ratio = f"{format_ratio(result)} {result.baseline.name}"
    headline = next((f for f in result.figures if f.name == result.headline), None)
    if headline is not None:
        text = f"{headline.name} = {format_value(headline.value, headline.unit)}"
        return f"{text} ({ratio})" if ratio is not None else text
    if ratio is not None:
        return ratio
    names = [result.headline] if result.headline is not None else []
    names += [c.figure for c in result.goal.checks] if result.goal is not None else []
    for name in names:
        figure = next((f for f in result.figures if f.name == name), None)
        if figure is not None:
            return f"{figure.name} = {format_value(figure.value, figure.unit)}"
    if result.figures:
        first = result.figures[0]
        return f"{first.name} = {format_value(first.value, first.unit)}"
    return "-"
