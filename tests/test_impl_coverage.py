"""impl/ coverage of a campaign: markers, the run report's table, the CLI's verdict.

The CI check itself (the branch classes reached by the CI profile's campaign) is in
tests/test_properties.py, on the campaign it measures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamcheck.properties._impl_coverage import (
    BRANCH_CLASSES,
    IMPL_DIR,
    ImplCoverage,
    ModuleCoverage,
    marker_lines,
)
from streamcheck.properties.cli import EXIT_ANOMALY, EXIT_USAGE, main


def test_every_branch_class_marker_names_code_that_exists() -> None:
    for name, markers in BRANCH_CLASSES.items():
        for marker in markers:
            assert marker_lines(marker), f"{name}: {marker} matches no impl/ code"


def test_a_function_marker_is_its_body_and_a_text_marker_its_matching_lines() -> None:
    body = marker_lines("jobstore/_redis.py:RedisJobStore.update_job")
    line = marker_lines("jobstore/_redis.py:RedisJobStore.update_job::raise IllegalTransition(")
    assert len(line) == 1 and line < body
    source = (IMPL_DIR / "jobstore/_redis.py").read_text().splitlines()
    assert "raise IllegalTransition(" in source[min(line) - 1]


@pytest.mark.parametrize(
    "marker",
    [
        "jobstore/_redis.py:RedisJobStore.no_such_method",
        "jobstore/_redis.py:RedisJobStore.update_job::text that is not there",
        "no_such_module.py:f",
        "jobstore/_redis.py",
    ],
)
def test_a_marker_that_matches_nothing_is_stale(marker: str) -> None:
    coverage = ImplCoverage(
        (ModuleCoverage("jobstore/_redis.py", 1, 1, 0, 0, frozenset(range(1, 10_000))),)
    )
    [verdict] = coverage.verdicts({"class": (marker,)})
    assert verdict.stale == (marker,) and not verdict.ok


def test_a_marker_whose_lines_did_not_run_is_missed() -> None:
    marker = "jobstore/_redis.py:RedisJobStore.update_job"
    coverage = ImplCoverage((ModuleCoverage("jobstore/_redis.py", 1, 0, 0, 0, frozenset()),))
    [verdict] = coverage.verdicts({"class": (marker,)})
    assert verdict.missed == (marker,) and not verdict.ok


def test_run_with_coverage_writes_the_table_and_says_what_was_not_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    # Five examples, so that the actor runs in one of them (with seed 0 the first three
    # happen to be turns with no reader and no emit).
    argv = ["run", "--examples", "5", "--seed", "0", "--coverage", "--run-dir", str(run_dir)]
    code = main([*argv, "--reports", str(tmp_path)])
    out = capsys.readouterr().out
    # Five examples reach neither every rare path nor every branch class: exit 1, in words.
    assert code == EXIT_ANOMALY
    assert "NOT REACHED: rare paths the run must reach:" in out
    data = json.loads((run_dir / "results.json").read_text())
    assert data["outcome"] == "unreached" and data["exit_code"] == EXIT_ANOMALY
    assert data["unreached_labels"]
    modules = {m["module"]: m for m in data["impl_coverage"]["modules"]}
    assert modules["transport/_actor.py"]["covered"] > 0
    assert {c["name"] for c in data["impl_coverage"]["branch_classes"]} == set(BRANCH_CLASSES)
    summary = (run_dir / "summary.md").read_text()
    assert "## impl/ coverage" in summary and "| transport/_actor.py |" in summary


def test_coverage_is_refused_with_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--coverage", "--workers", "2"]) == EXIT_USAGE
    assert "--coverage" in capsys.readouterr().err
