"""``streamcheck canaries``: how well the harness finds each historical bug.

For every canary (and the correct implementation as the control) it runs a campaign
and records whether an anomaly was found, which classes, after how many examples and
wall seconds, and how short the shrunk trace is. Results go to
``reports/canaries.md`` and ``reports/canaries.json``.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from streamcheck.properties._campaign import CampaignResult, ProgressCallback, run_campaign
from streamcheck.properties.canaries import Canary

SCHEMA_VERSION = 1


def run_canaries(
    *,
    examples: int,
    seed: int | None,
    reports: Path,
    progress: Callable[[str], None] = print,
    on_progress: ProgressCallback | None = None,
    workers: int = 1,
    only: frozenset[Canary] | None = None,
) -> list[tuple[str, CampaignResult]]:
    """One campaign per canary (every one, or those in ``only``) and one for the correct
    implementation; with ``workers`` > 1 that many run at once, each in its own process
    (each campaign's figures are its own; ``on_progress`` is then not called)."""
    subjects: list[tuple[str, frozenset[Canary]]] = [("(correct implementation)", frozenset())]
    subjects += [(c.value, frozenset({c})) for c in Canary if only is None or c in only]
    replays: dict[str, Path] = {}
    for name, canaries in subjects:
        slug = "correct" if not canaries else name
        replays[name] = reports / "failures" / f"canary-{slug}.json"
        replays[name].unlink(missing_ok=True)
    results: dict[str, CampaignResult] = {}
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # fresh interpreters, as in run
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            progress(f"{len(subjects)} campaigns of up to {examples} examples, {workers} at once")
            futures = {
                pool.submit(_campaign, canaries, examples, seed, replays[name]): name
                for name, canaries in subjects
            }
            for future in as_completed(futures):
                name = futures[future]
                results[name] = future.result()
                progress(f"{name}: {_verdict(name, results[name])}")
    else:
        for name, canaries in subjects:
            progress(f"{name}: running up to {examples} examples ...")
            results[name] = run_campaign(
                canaries=canaries,
                examples=examples,
                seed=seed,
                replay_file=replays[name],
                on_progress=on_progress,
            )
            progress(f"  {_verdict(name, results[name])}")
    rows = [(name, results[name]) for name, _ in subjects]
    write_reports(rows, reports=reports, examples=examples, seed=seed, workers=workers, only=only)
    return rows


def _campaign(
    canaries: frozenset[Canary], examples: int, seed: int | None, replay: Path
) -> CampaignResult:
    """One canary's campaign in a worker process."""
    return run_campaign(canaries=canaries, examples=examples, seed=seed, replay_file=replay)


def _verdict(name: str, result: CampaignResult) -> str:
    if result.crashed:
        return f"crashed: {result.crashed.splitlines()[0]}"
    if not result.found:
        return "nothing found" + (" (expected)" if name.startswith("(") else " (MISSED)")
    kinds = ", ".join(k.value for k in result.anomaly_kinds)
    return (
        f"found {kinds} at example {result.first_failure_example} after "
        f"{result.first_failure_seconds:.1f} s; {result.shrink_summary()}"
    )


def _hypothesis_shrink(result: CampaignResult) -> str:
    if result.hypothesis_shrunk_steps is None:
        return "-"
    return f"{result.shrunk_rules}, {result.hypothesis_shrunk_steps}"


def write_reports(
    rows: list[tuple[str, CampaignResult]],
    *,
    reports: Path,
    examples: int,
    seed: int | None,
    workers: int = 1,
    only: frozenset[Canary] | None = None,
) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "generated": stamp,
        "budget_examples": examples,
        "seed": seed,
        "rows": [
            {
                "canary": name,
                "detected": result.found,
                "anomaly_classes": [k.value for k in result.anomaly_kinds],
                "examples_to_first_failure": result.first_failure_example,
                "seconds_to_first_failure": result.first_failure_seconds,
                "shrunk_trace_steps": result.shrunk_steps,
                "shrunk_trace_rules": result.shrunk_rules,
                "hypothesis_shrunk_steps": result.hypothesis_shrunk_steps,
                "examples_run": result.examples,
                "wall_seconds": round(result.seconds, 2),
                "crashed": result.crashed,
                "replay_file": str(result.replay_file) if result.replay_file else None,
            }
            for name, result in rows
        ],
    }
    (reports / "canaries.json").write_text(json.dumps(data, indent=2))
    lines = [
        "# Canaries: historical LibreChat bugs put back, and what the harness made of them",
        "",
        f"Generated {stamp} by `streamcheck canaries --examples {examples}"
        + (f" --seed {seed}" if seed is not None else "")
        + (f" --only {','.join(sorted(c.value for c in only))}" if only else "")
        + (f" --workers {workers}" if workers > 1 else "")
        + "`.",
        "",
        "| canary | detected | anomaly classes | examples to first failure "
        "| seconds to first failure | shrunk trace: decisions "
        "| Hypothesis's shrunk example: rules, decisions |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in rows:
        seconds = (
            f"{result.first_failure_seconds:.1f}"
            if result.first_failure_seconds is not None
            else "-"
        )
        lines.append(
            f"| {name} | {'yes' if result.found else ('crashed' if result.crashed else 'no')} "
            f"| {', '.join(k.value for k in result.anomaly_kinds) or '-'} "
            f"| {result.first_failure_example or '-'} | {seconds} "
            f"| {result.shrunk_steps or '-'} | {_hypothesis_shrink(result)} |"
        )
    (reports / "canaries.md").write_text("\n".join(lines) + "\n")
