"""Campaigns in several worker processes (``streamcheck run --workers N``).

* The example budget is shared out, never overrun by more than Hypothesis's own few
  extra examples per campaign; every worker's figures are summed.
* The first failure stops every worker from starting another campaign; its replay file
  lands where a one-process run puts it, the workers' own files are gone, and it
  replays deterministically with the same anomaly.
* A time budget alone ends the run; a worker that dies is reported as a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streamcheck.properties import _parallel
from streamcheck.properties._parallel import run_in_workers, worker_replay_file
from streamcheck.properties._replay import load_replay, replay_twice
from streamcheck.properties.canaries import Canary
from streamcheck.properties.cli import EXIT_ANOMALY, EXIT_OK, EXIT_USAGE, main


def test_workers_share_the_example_budget(tmp_path: Path) -> None:
    replay = tmp_path / "run.json"
    result = run_in_workers(2, examples=30, chunk=10, seed=3, replay_file=replay)
    assert result.workers == 2 and result.crashed is None and not result.found
    # Three campaigns of 10 (Hypothesis may run a few more per campaign).
    assert 30 <= result.examples < 45
    assert result.rule_steps is not None and result.rule_steps > result.examples
    assert result.labels and result.seed == 3 and result.budget == 30
    assert not replay.exists() and not list(tmp_path.iterdir())


def test_the_first_failure_stops_the_workers_and_replays(tmp_path: Path) -> None:
    replay = tmp_path / "run.json"
    canary = frozenset({Canary.UNBOUNDED_EARLY_BUFFER})
    result = run_in_workers(2, examples=8000, chunk=20, canaries=canary, seed=0, replay_file=replay)
    assert result.found and result.crashed is None
    assert result.first_failure_example is not None and result.first_failure_seconds is not None
    assert result.first_failure_example <= result.examples
    # Stopped long before the budget: each worker finished the campaign it was in (the
    # count includes the failing one's shrink attempts, a few hundred examples at most).
    # (Since the machine gained the submit rule, seed 0 finds it after about 2,600.)
    assert result.examples < 4000
    assert result.replay_file == replay and replay.exists()
    assert not worker_replay_file(replay, 0).exists() and not worker_replay_file(replay, 1).exists()
    decisions, canaries, replicas, _ = load_replay(replay)
    replayed, deterministic = replay_twice(decisions, canaries=canaries, replicas=replicas)
    assert deterministic
    assert set(replayed.report.by_kind()) == set(result.anomaly_kinds)


def test_a_time_budget_alone_ends_the_run() -> None:
    result = run_in_workers(2, seconds=0.5, chunk=5, seed=1)
    assert result.budget is None and result.budget_seconds == 0.5
    # Every worker starts at least one campaign: the budget is checked between them.
    assert result.examples >= 5 and not result.found and result.crashed is None


def test_a_worker_that_dies_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker killed outright (as by the OOM killer) never reports: the parent
    # notices that it died, and says so instead of waiting for ever.
    monkeypatch.setattr(_parallel, "_GRACE_POLLS", 1)
    monkeypatch.setattr(_parallel, "_work", _die)
    result = run_in_workers(1, examples=5, seed=0)
    assert result.crashed == "worker 0 died (exit code 3)"
    assert result.examples == 0


def _die(*_args: object) -> None:
    os._exit(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"examples": 5, "workers": 0}, "workers must be 1 to 32"),
        ({"workers": 2}, "give a time budget"),
        ({"workers": 2, "seconds": 0.0}, "must be positive"),
        ({"workers": 2, "examples": 0}, "at least 1"),
    ],
)
def test_impossible_runs_are_refused(kwargs: dict[str, object], message: str) -> None:
    workers = kwargs.pop("workers")
    assert isinstance(workers, int)
    with pytest.raises(ValueError, match=message):
        run_in_workers(workers, **kwargs)  # type: ignore[arg-type]


def test_run_with_workers_writes_its_report(tmp_path: Path) -> None:
    code = main(
        [
            "run",
            "--workers",
            "2",
            "--examples",
            "40",
            "--seed",
            "5",
            "--allow-unreached",
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == EXIT_OK
    [run_dir] = (tmp_path / "runs").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert data["workers"] == 2 and data["budget_examples"] == 40 and data["seed"] == 5
    assert data["settings"]["max_examples"] == 100
    assert data["figures"]["examples"] >= 40
    assert (
        "| worker processes | 2 (campaigns of 100 examples" in (run_dir / "summary.md").read_text()
    )


def test_a_failing_run_with_workers_exits_1_with_its_replay_file(tmp_path: Path) -> None:
    code = main(
        [
            "run",
            "--workers",
            "2",
            "--canary",
            "unbounded-early-buffer",
            "--budget",
            "60",
            "--seed",
            "0",
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == EXIT_ANOMALY
    [run_dir] = (tmp_path / "runs").iterdir()
    assert load_replay(run_dir / "run.json")[0]
    assert (tmp_path / "failures" / "run.json").exists()
    assert sorted(p.name for p in (tmp_path / "failures").iterdir()) == [
        "run.json",
        "timeline.html",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be an integer from 1 to 32, not 0"),
        (["--workers", "33"], "--workers: must be an integer from 1 to 32, not 33"),
        (["--workers", "2", "--backend", "redis"], "--workers applies to --backend sim"),
    ],
)
def test_workers_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv]) == EXIT_USAGE
    assert message in capsys.readouterr().err
