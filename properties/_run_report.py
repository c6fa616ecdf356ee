"""Per-run reports: ``summary.md`` for people and ``results.json`` for tools.

``streamcheck run`` (simulation backend) writes both into ``<reports>/runs/<UTC
timestamp>/`` (or ``--run-dir``), together with copies of the failure's replay file
(``run.json``) and ``timeline.html`` when an example failed; the pytest plugin writes
the same files next to a failing test's replay file.

``results.json`` carries ``"schema": "streamcheck.run/1"``; every field is documented
in ``reports/README.md`` ("results.json"), and ``tests/test_run_report.py`` checks that
every key this module writes is documented there. Within one schema version fields are
only ever added, never renamed, removed or retyped; any other change bumps the version
(``streamcheck.run/2``).

Paths under ``files`` are relative to the run directory, so the directory can be moved
or uploaded as a CI artefact and still be read; the other paths are as the command was
given them (relative to its working directory, unless given absolute).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import platform
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import settings as HypothesisSettings

from streamcheck.properties._campaign import (
    CampaignResult,
    CampaignSpec,
    ProgressCallback,
    run,
)

if TYPE_CHECKING:
    # coverage.py comes with the `quality` extra; a run without --coverage never needs it.
    from streamcheck.properties._impl_coverage import ImplCoverage

SCHEMA = "streamcheck.run/1"
SUMMARY_FILENAME = "summary.md"
RESULTS_FILENAME = "results.json"
#: The names of the failure's copies inside the run directory.
REPLAY_FILENAME = "run.json"
TIMELINE_COPY_FILENAME = "timeline.html"

#: How many anomalies summary.md spells out (results.json holds all of them).
SUMMARY_ANOMALY_LIMIT = 20


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What ran, as the caller knows it (the campaign result says what happened)."""

    #: The command line, as one shell-quoted string.
    command: str
    backend: str
    #: The Hypothesis settings the campaign ran with.
    settings: HypothesisSettings
    #: Seed asked for (None: Hypothesis drew one; the result records it).
    seed: int | None
    started: datetime.datetime
    finished: datetime.datetime
    #: The original replay file and timeline (``<reports>/failures/...``), if written.
    replay_file: Path | None = None
    timeline: Path | None = None
    #: impl/'s coverage during the campaign (``streamcheck run --coverage``).
    impl_coverage: ImplCoverage | None = None


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """Where and when :func:`run_and_report` writes a run's report."""

    #: The command that runs this again, as one shell-quoted string (results.json).
    command: str
    #: The run directory, given the run's start (``streamcheck run``: a new
    #: ``<reports>/runs/<UTC timestamp>/``; the pytest plugin: the test's folder).
    run_dir: Callable[[datetime.datetime], Path]
    backend: str = "sim"
    #: Write a report for a run that found nothing and did not crash too
    #: (``streamcheck run``: yes; the pytest plugin: only failures leave files).
    clean_runs: bool = True
    #: Draw the timeline of a crashed run's replay file too (the pytest plugin does;
    #: ``streamcheck run`` draws anomalies only and reports a crash in words).
    timeline_on_crash: bool = True
    #: Measure impl/'s coverage during the run (``streamcheck run --coverage``).
    impl_coverage: bool = False


@dataclass(frozen=True, slots=True)
class ReportedRun:
    """What :func:`run_and_report` ran and wrote."""

    result: CampaignResult
    impl_coverage: ImplCoverage | None
    #: The timeline drawn next to the replay file (None: none).
    timeline: Path | None
    #: Where the report went, and its results.json document (None: nothing written).
    run_dir: Path | None
    results: dict[str, Any] | None


def run_and_report(
    spec: CampaignSpec,
    reporting: ReportSpec,
    *,
    on_progress: ProgressCallback | None = None,
    before_writing: Callable[[CampaignResult, ImplCoverage | None], None] | None = None,
) -> ReportedRun:
    """Run ``spec`` (:func:`streamcheck.properties._campaign.run`), draw the failure's
    timeline next to its replay file, and write summary.md and results.json (with
    copies of the replay file and timeline) into the run directory: the one path
    from a campaign to its report, for the CLI and the pytest plugin.

    ``before_writing`` sees the result before any file is written (the CLI tells the
    verdict there, so that it is said even if the report cannot be written). A report
    that cannot be written raises :class:`OSError` saying so.
    """
    from streamcheck.properties.report import TIMELINE_FILENAME, write_timeline

    started = utc_now()
    measured: list[ImplCoverage] = []
    with contextlib.ExitStack() as stack:
        if reporting.impl_coverage:
            from streamcheck.properties._impl_coverage import measure_impl

            measured = stack.enter_context(measure_impl())
        result = run(spec, on_progress=on_progress)
    impl_coverage = measured[0] if measured else None
    if before_writing is not None:
        before_writing(result, impl_coverage)
    failed = result.found or result.crashed is not None
    if not (failed or reporting.clean_runs):
        return ReportedRun(result, impl_coverage, timeline=None, run_dir=None, results=None)
    timeline: Path | None = None
    drawn = reporting.timeline_on_crash if result.crashed else result.found
    if drawn and result.replay_file is not None and result.replay_file.exists():
        timeline = write_timeline(result.replay_file, result.replay_file.parent / TIMELINE_FILENAME)
    info = RunInfo(
        command=reporting.command,
        backend=reporting.backend,
        settings=spec.settings(),
        seed=spec.seed,
        started=started,
        finished=utc_now(),
        replay_file=result.replay_file,
        timeline=timeline,
        impl_coverage=impl_coverage,
    )
    try:
        run_dir = reporting.run_dir(started)
        results = write_run_report(result, info, run_dir)
    except OSError as exc:
        raise OSError(f"cannot write the run report: {exc}") from exc
    return ReportedRun(result, impl_coverage, timeline=timeline, run_dir=run_dir, results=results)


def command_line(program: str, argv: Sequence[str]) -> str:
    return shlex.join([program, *argv])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_dir(reports: Path, moment: datetime.datetime) -> Path:
    """``<reports>/runs/<UTC timestamp>/``, created; ``-2``, ``-3``... if taken."""
    runs = reports / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = moment.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        candidate = runs / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free run directory for {stamp} under {runs}")


def outcome(result: CampaignResult, impl_coverage: ImplCoverage | None = None) -> str:
    if result.crashed:
        return "crashed"
    if result.found:
        return "anomaly"
    classes_missed = impl_coverage is not None and not all(v.ok for v in impl_coverage.verdicts())
    return "unreached" if result.unreached_labels or classes_missed else "passed"


def exit_code(result: CampaignResult, impl_coverage: ImplCoverage | None = None) -> int:
    """The CLI's exit code for a campaign: 0 nothing found, 1 anomaly, crash, or a
    required path never reached."""
    return 0 if outcome(result, impl_coverage) == "passed" else 1


def settings_to_json(chosen: HypothesisSettings) -> dict[str, Any]:
    database = chosen.database
    return {
        "max_examples": chosen.max_examples,
        "stateful_step_count": chosen.stateful_step_count,
        "phases": [phase.name for phase in chosen.phases],
        "shrink": any(phase.name == "shrink" for phase in chosen.phases),
        "derandomize": chosen.derandomize,
        "deadline_ms": (
            None if chosen.deadline is None else chosen.deadline.total_seconds() * 1000
        ),
        "database": None if database is None else repr(database),
        "report_multiple_bugs": chosen.report_multiple_bugs,
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def results_json(
    result: CampaignResult, info: RunInfo, *, run_dir: Path, files: dict[str, str | None]
) -> dict[str, Any]:
    seconds = result.seconds
    per_second = (lambda n: round(n / seconds, 2)) if seconds > 0 else (lambda n: None)
    report = result.report
    replay_in_run = files.get("replay_file")
    return {
        "schema": SCHEMA,
        "command": info.command,
        "started": _iso(info.started),
        "finished": _iso(info.finished),
        "backend": info.backend,
        "canaries": sorted(c.value for c in result.canaries),
        "replicas": result.replicas,
        "budget_examples": result.budget,
        "budget_seconds": result.budget_seconds,
        "workers": result.workers,
        "seed_requested": info.seed,
        "seed": result.seed,
        "settings": settings_to_json(info.settings),
        "versions": {
            "streamcheck": _version("streamcheck"),
            "hypothesis": _version("hypothesis"),
            "python": platform.python_version(),
        },
        "outcome": outcome(result, info.impl_coverage),
        "exit_code": exit_code(result, info.impl_coverage),
        "figures": {
            "examples": result.examples,
            "seconds": round(seconds, 3),
            "examples_per_second": per_second(result.examples),
            "rule_steps": result.rule_steps,
            "rule_steps_per_second": (
                per_second(result.rule_steps) if result.rule_steps is not None else None
            ),
            "failing_examples": result.failing_examples,
            "first_failure_example": result.first_failure_example,
            "first_failure_seconds": (
                None
                if result.first_failure_seconds is None
                else round(result.first_failure_seconds, 3)
            ),
            "shrunk_steps": result.shrunk_steps,
            "shrunk_rules": result.shrunk_rules,
            "hypothesis_shrunk_steps": result.hypothesis_shrunk_steps,
            "rules": result.rules,
        },
        "coverage_labels": dict(sorted(result.labels.items())),
        "channel_messages_dropped": {
            "foreign_hints": result.channel.get("foreign_hints", 0),
            "malformed_dropped": result.channel.get("malformed_dropped", 0),
            "unconfirmed_aborts": result.channel.get("unconfirmed_aborts", 0),
        },
        "unreached_labels": list(result.unreached_labels),
        "impl_coverage": info.impl_coverage.to_json() if info.impl_coverage else None,
        "anomalies": {
            "by_kind": (
                {kind.value: n for kind, n in sorted(report.by_kind().items())} if report else {}
            ),
            "items": [a.to_json() for a in report.anomalies] if report else [],
        },
        "crashed": result.crashed,
        "run_dir": str(run_dir),
        "files": files,
        "failure_files": {
            "replay_file": _elsewhere(info.replay_file, run_dir, files.get("replay_file")),
            "timeline": _elsewhere(info.timeline, run_dir, files.get("timeline")),
        },
        "replay_command": (
            command_line("streamcheck", ["replay", str(run_dir / replay_in_run)])
            if replay_in_run
            else None
        ),
    }


def _elsewhere(original: Path | None, run_dir: Path, copy: str | None) -> str | None:
    """The original's path, unless there is none or it is the run directory's copy."""
    if original is None or copy is None:
        return None
    if original.resolve() == (run_dir / copy).resolve():
        return None
    return str(original)


def write_run_report(result: CampaignResult, info: RunInfo, run_dir: Path) -> dict[str, Any]:
    """Write summary.md and results.json (and copy the failure's replay file and
    timeline) into ``run_dir``; return the results.json document."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {
        "summary": SUMMARY_FILENAME,
        "results": RESULTS_FILENAME,
        "replay_file": None,
        "timeline": None,
    }
    for key, source, name in (
        ("replay_file", info.replay_file, REPLAY_FILENAME),
        ("timeline", info.timeline, TIMELINE_COPY_FILENAME),
    ):
        if source is None or not source.exists():
            # A re-used --run-dir must not keep an earlier run's failure next to this one.
            (run_dir / name).unlink(missing_ok=True)
            continue
        target = run_dir / name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        files[key] = name
    data = results_json(result, info, run_dir=run_dir, files=files)
    (run_dir / RESULTS_FILENAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (run_dir / SUMMARY_FILENAME).write_text(render_summary(data), encoding="utf-8")
    return data


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_summary(data: dict[str, Any]) -> str:
    """summary.md, from the results.json document alone (so one cannot say what the
    other does not)."""
    figures = data["figures"]
    settings_ = data["settings"]
    anomalies = data["anomalies"]
    verdict = {
        "passed": "no anomaly found",
        "anomaly": "ANOMALY found: " + ", ".join(anomalies["by_kind"]),
        "crashed": "the run CRASHED",
        "unreached": "no anomaly found, but a required path was NOT REACHED",
    }[data["outcome"]]
    seed = data["seed"]
    seed_text = "derandomized (no seed)" if seed is None else str(seed)
    if data["seed_requested"] is None and seed is not None:
        seed_text += " (drawn by Hypothesis; `--seed` it to repeat this search)"
    lines = [
        f"# streamcheck run: {verdict}",
        "",
        f"`{data['command']}`",
        "",
        f"Started {data['started']}, finished {data['finished']}; exit code {data['exit_code']}.",
        "",
        "## What ran",
        "",
        "| | |",
        "|---|---|",
        f"| backend | {data['backend']} |",
        f"| canaries | {', '.join(data['canaries']) or 'none (the correct implementation)'} |",
        f"| replicas | {data['replicas']} |",
        f"| examples (budget) | {data['budget_examples'] or 'no limit'} |",
        *(
            [f"| time budget | {data['budget_seconds']:g} s (checked between campaigns) |"]
            if data["budget_seconds"] is not None
            else []
        ),
        *(
            [
                f"| worker processes | {data['workers']} (campaigns of "
                f"{settings_['max_examples']} examples shared among them) |"
            ]
            if data["workers"] > 1
            else []
        ),
        f"| seed | {_cell(seed_text)} |",
        f"| versions | streamcheck {data['versions']['streamcheck']}, hypothesis "
        f"{data['versions']['hypothesis']}, Python {data['versions']['python']} |",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        f"| max_examples | {settings_['max_examples']} |",
        f"| stateful_step_count | {settings_['stateful_step_count']} |",
        f"| phases | {', '.join(settings_['phases'])} |",
        f"| derandomize | {settings_['derandomize']} |",
        f"| deadline | {_ms(settings_['deadline_ms'])} |",
        f"| database | {_cell(settings_['database'] or 'none')} |",
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| examples run (shrinking included) | {figures['examples']:,} |",
        f"| wall seconds | {figures['seconds']:.1f} |",
        f"| examples/s | {_number(figures['examples_per_second'])} |",
    ]
    if figures["rule_steps"] is not None:
        lines.append(
            f"| rule steps (decisions) | {figures['rule_steps']:,} "
            f"({_number(figures['rule_steps_per_second'])}/s) |"
        )
    if figures["first_failure_example"] is not None:
        lines.append(
            f"| first failing example | #{figures['first_failure_example']} after "
            f"{figures['first_failure_seconds']:.1f} s |"
        )
        lines.append(f"| failing examples (shrinking included) | {figures['failing_examples']} |")
    if figures["shrunk_steps"] is not None:
        lines.append(f"| shrunk to | {figures['shrunk_steps']} decisions |")
        rules, steps = figures.get("shrunk_rules"), figures.get("hypothesis_shrunk_steps")
        if rules is not None and steps is not None:
            lines.append(f"| Hypothesis's shrunk example | {rules} rules, {steps} decisions |")
    dropped = data["channel_messages_dropped"]
    lines.append(
        f"| channel messages dropped (untrusted) | {dropped['foreign_hints']:,} hints the "
        f"log did not confirm, {dropped['malformed_dropped']:,} malformed, "
        f"{dropped.get('unconfirmed_aborts', 0):,} abort signals no abort claimed |"
    )
    lines += ["", "## Coverage labels reached", ""]
    labels: dict[str, int] = data["coverage_labels"]
    if labels:
        lines += ["| label | examples |", "|---|---|"]
        lines += [f"| {_cell(label)} | {count:,} |" for label, count in labels.items()]
    else:
        lines.append("None (no example ran to its heal phase).")
    if data["unreached_labels"]:
        lines += ["", f"Required and never reached: {', '.join(data['unreached_labels'])}."]
    if data["impl_coverage"]:
        lines += ["", *_coverage_lines(data["impl_coverage"])]
    lines += ["", "## Anomalies", ""]
    items: list[dict[str, Any]] = anomalies["items"]
    if data["crashed"]:
        lines += ["The run crashed (a crash of impl/ or the harness):", "", "```"]
        lines += [data["crashed"], "```", ""]
    if not items:
        lines.append("None found." if not data["crashed"] else "None found before the crash.")
    else:
        counts = ", ".join(f"{kind} x{n}" for kind, n in anomalies["by_kind"].items())
        lines += [f"In the shrunk example: {counts}.", ""]
        for item in items[:SUMMARY_ANOMALY_LIMIT]:
            good = "none" if item["last_good"] is None else item["last_good"]
            lines.append(
                f"- **{item['kind']}** at record {item['first_bad']} (last good {good}): "
                f"{item['explanation']}"
            )
        hidden = len(items) - SUMMARY_ANOMALY_LIMIT
        if hidden > 0:
            lines.append(f"- ... and {hidden} more (results.json lists them all)")
    files = data["files"]
    if files["replay_file"] or files["timeline"]:
        run_dir = Path(data["run_dir"])
        lines += ["", "## Files", ""]
        if files["replay_file"]:
            lines.append(f"- replay file: `{run_dir / files['replay_file']}`")
            lines.append(f"  (re-run it without Hypothesis: `{data['replay_command']}`)")
        if files["timeline"]:
            lines.append(f"- timeline: `{run_dir / files['timeline']}` (open it in a browser)")
        failure = data["failure_files"]
        originals = [p for p in (failure["replay_file"], failure["timeline"]) if p]
        if originals:
            lines.append(
                "- the same files as first written (the next run overwrites them): "
                + ", ".join(f"`{p}`" for p in originals)
            )
    return "\n".join(lines) + "\n"


def _coverage_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        "## impl/ coverage",
        "",
        "Measured from the campaign's start: lines run at import (module and class "
        "level) count as missed.",
        "",
        "| module | statements | covered | branches | covered | % |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {m['module']} | {m['statements']} | {m['covered']} | {m['branches']} "
        f"| {m['covered_branches']} | {m['percent']:.1f} |"
        for m in data["modules"]
    ]
    lines += ["", "| branch class | verdict | not reached |", "|---|---|---|"]
    for c in data["branch_classes"]:
        missing = [*c["missed"], *(f"{m} (stale)" for m in c["stale"])]
        verdict = "reached" if not missing else "NOT REACHED"
        lines.append(f"| {c['name']} | {verdict} | {_cell(', '.join(missing)) or '-'} |")
    return lines


def _ms(value: float | None) -> str:
    return "none" if value is None else f"{value:g} ms"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"
