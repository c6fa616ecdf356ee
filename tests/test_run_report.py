"""Per-run reports of ``streamcheck run`` and the progress bar of long runs.

* Every simulation run leaves ``<reports>/runs/<UTC timestamp>/`` with ``summary.md``
  and ``results.json`` (schema ``streamcheck.run/1``, every field documented in
  reports/README.md), plus copies of the replay file and timeline when it failed; the
  old ``failures/run.json`` and ``failures/timeline.html`` are still written.
* The committed sample run (reports/sample/run/) is complete, agrees with its replay
  file, and the replay file re-runs deterministically.
* The progress bar draws on a terminal only: tests and CI logs get nothing on stderr.
"""

from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from streamcheck.impl import GenerationJobManager
from streamcheck.model import AnomalyKind
from streamcheck.properties._campaign import (
    CampaignResult,
    Progress,
    campaign_settings,
    run_campaign,
)
from streamcheck.properties._progress import ProgressBar, render
from streamcheck.properties._replay import load_replay, replay_twice
from streamcheck.properties._run_report import SCHEMA, RunInfo, new_run_dir, write_run_report
from streamcheck.properties.canaries import Canary
from streamcheck.properties.cli import EXIT_ANOMALY, EXIT_OK, main

ROOT = Path(__file__).parent.parent
README = ROOT / "reports" / "README.md"
SAMPLE = ROOT / "reports" / "sample" / "run"
RUN_FILES = {"summary.md", "results.json", "run.json", "timeline.html"}
#: Objects whose keys are data (labels, anomaly classes), not fields.
MAPS = {"coverage_labels", "anomalies.by_kind"}


def _fields(value: Any, prefix: str = "") -> set[str]:
    """Every field path of a results.json document (``a.b``, ``list[].field``)."""
    paths: set[str] = set()
    if isinstance(value, dict) and prefix not in MAPS:
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= _fields(inner, path)
    elif isinstance(value, list):
        for item in value:
            paths |= _fields(item, f"{prefix}[]")
    return paths


def _documented() -> set[str]:
    section = README.read_text().split("## results.json", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def test_a_failing_run_leaves_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--canary",
            "per-process-counters",
            "--examples",
            "60",
            "--seed",
            "0",
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == EXIT_ANOMALY
    out, err = capsys.readouterr()
    assert err == ""  # not a terminal: no progress bar
    [run_dir] = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z", run_dir.name)
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
    # The old places still hold the failure, and the run directory holds copies.
    failures = tmp_path / "failures"
    for name in ("run.json", "timeline.html"):
        assert (failures / name).read_bytes() == (run_dir / name).read_bytes()
    assert f"streamcheck replay {run_dir / 'run.json'}" in out
    assert f"report:      {run_dir / 'summary.md'}" in out

    data = json.loads((run_dir / "results.json").read_text())
    assert data["schema"] == SCHEMA == "streamcheck.run/1"
    assert data["command"] == (
        f"streamcheck run --canary per-process-counters --examples 60 --seed 0 --reports {tmp_path}"
    )
    assert data["outcome"] == "anomaly" and data["exit_code"] == EXIT_ANOMALY
    assert data["canaries"] == ["per-process-counters"]
    assert data["budget_examples"] == 60 and data["seed"] == 0
    assert data["settings"]["shrink"] is True
    figures = data["figures"]
    assert figures["examples"] >= figures["first_failure_example"] >= 1
    assert figures["rule_steps"] > figures["examples"]
    assert figures["shrunk_steps"] == len(load_replay(run_dir / "run.json")[0])
    # Which classes a canary shows is test_properties.py's business; here: some, named.
    assert data["anomalies"]["by_kind"] and data["anomalies"]["items"]
    assert all(item["explanation"] for item in data["anomalies"]["items"])
    assert data["files"] == {
        "summary": "summary.md",
        "results": "results.json",
        "replay_file": "run.json",
        "timeline": "timeline.html",
    }
    assert data["failure_files"]["replay_file"] == str(failures / "run.json")
    assert data["replay_command"] == f"streamcheck replay {run_dir / 'run.json'}"

    summary = (run_dir / "summary.md").read_text()
    kinds = ", ".join(data["anomalies"]["by_kind"])
    assert summary.startswith(f"# streamcheck run: ANOMALY found: {kinds}\n")
    for item in data["anomalies"]["items"]:
        assert item["explanation"] in summary
    for label in data["coverage_labels"]:
        assert f"| {label} |" in summary
    assert data["replay_command"] in summary
    assert "timeline.html" in summary


def test_a_clean_run_with_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "run.json").write_text("{}")  # a previous failure there must not survive
    code = main(
        [
            "run",
            "--examples",
            "5",
            "--seed",
            "0",
            "--allow-unreached",
            "--reports",
            str(tmp_path),
            "--run-dir",
            str(mine),
        ]
    )
    assert code == EXIT_OK
    assert capsys.readouterr().err == ""
    assert {p.name for p in mine.iterdir()} == {"summary.md", "results.json"}
    assert not (tmp_path / "runs").exists()
    data = json.loads((mine / "results.json").read_text())
    assert data["outcome"] == "passed" and data["exit_code"] == EXIT_OK
    assert data["files"]["replay_file"] is None and data["replay_command"] is None
    assert data["anomalies"] == {"by_kind": {}, "items": []}
    assert data["figures"]["first_failure_example"] is None
    summary = (mine / "summary.md").read_text()
    assert summary.startswith("# streamcheck run: no anomaly found")
    assert "none (the correct implementation)" in summary
    assert "## Files" not in summary


def test_run_dir_is_refused_for_real_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--backend", "redis", "--run-dir", "x"]) == 2
    assert "--run-dir applies to --backend sim" in capsys.readouterr().err


def test_a_run_with_three_replicas_records_them_and_replays_with_them(tmp_path: Path) -> None:
    code = main(
        [
            "run",
            "--canary",
            "per-process-counters",
            "--replicas",
            "3",
            "--examples",
            "60",
            "--seed",
            "0",
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == EXIT_ANOMALY
    [run_dir] = (tmp_path / "runs").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert data["replicas"] == 3
    assert "| replicas | 3 |" in (run_dir / "summary.md").read_text()
    decisions, _, replicas, _ = load_replay(run_dir / "run.json")
    assert replicas == 3
    assert all(
        0 <= value < 3
        for decision in decisions
        for name, value in decision.args.items()
        if name == "replica"
    )


def test_a_time_budget_runs_campaigns_until_the_examples_or_the_time_run_out(
    tmp_path: Path,
) -> None:
    code = main(
        [
            "run",
            "--budget",
            "60",
            "--examples",
            "150",
            "--seed",
            "0",
            "--allow-unreached",
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == EXIT_OK
    [run_dir] = (tmp_path / "runs").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert (data["budget_seconds"], data["budget_examples"]) == (60, 150)
    # Two campaigns (100 + 50 examples; Hypothesis may run a few more), well within 60 s.
    assert 150 <= data["figures"]["examples"] < 200
    assert data["seed"] == 0
    assert (
        "| time budget | 60 s (checked between campaigns) |" in (run_dir / "summary.md").read_text()
    )


def test_a_time_budget_stops_at_the_first_failure(tmp_path: Path) -> None:
    code = main(
        [
            "run",
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
    data = json.loads((run_dir / "results.json").read_text())
    assert data["budget_examples"] is None and data["budget_seconds"] == 60
    assert data["figures"]["first_failure_example"] <= data["figures"]["examples"]
    assert load_replay(run_dir / "run.json")[0]


@pytest.mark.parametrize("argv", [["--budget", "0"], ["--examples", "0"], ["--budget", "-1"]])
def test_a_budget_that_cannot_run_is_a_usage_error(argv: list[str]) -> None:
    assert main(["run", *argv]) == 2


def test_the_real_tier_refuses_a_time_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--backend", "redis", "--budget", "5"]) == 2
    assert "--budget applies to --backend sim" in capsys.readouterr().err


@pytest.mark.parametrize("replicas", ["1", "9"])
def test_replicas_out_of_range_is_a_usage_error(
    replicas: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--replicas", replicas]) == 2
    assert f"--replicas: must be an integer from 2 to 8, not {replicas}" in capsys.readouterr().err


def test_a_crash_is_reported(tmp_path: Path) -> None:
    result = CampaignResult(
        canaries=frozenset({Canary.PER_PROCESS_COUNTERS}),
        examples=4,
        seconds=0.5,
        anomaly_kinds=(),
        first_failure_example=None,
        first_failure_seconds=None,
        shrunk_steps=None,
        replay_file=None,
        crashed="RuntimeError: boom (at impl/x.py:1)",
        budget=10,
        seed=None,
    )
    moment = datetime.datetime(2026, 11, 26, 9, 0, tzinfo=datetime.UTC)
    info = RunInfo(
        command="streamcheck run",
        backend="sim",
        settings=campaign_settings(10),
        seed=None,
        started=moment,
        finished=moment,
    )
    data = write_run_report(result, info, tmp_path / "crash")
    assert data["outcome"] == "crashed" and data["exit_code"] == 1
    assert data["started"] == "2026-11-26T09:00:00Z"
    summary = (tmp_path / "crash" / "summary.md").read_text()
    assert "the run CRASHED" in summary and "RuntimeError: boom" in summary


def test_run_directories_never_collide(tmp_path: Path) -> None:
    moment = datetime.datetime(2026, 11, 26, 9, 0, 1, tzinfo=datetime.UTC)
    first, second = new_run_dir(tmp_path, moment), new_run_dir(tmp_path, moment)
    assert (first.name, second.name) == ("20261126T090001Z", "20261126T090001Z-2")


def test_every_results_field_is_documented() -> None:
    documented = _documented()
    sample = json.loads((SAMPLE / "results.json").read_text())
    missing = _fields(sample) - documented
    assert not missing, f"results.json fields missing from reports/README.md: {sorted(missing)}"
    # ... and the README documents no field that is not written.
    assert documented - _fields(sample) == set()


def test_the_committed_sample_run() -> None:
    assert {p.name for p in SAMPLE.iterdir()} == RUN_FILES
    data = json.loads((SAMPLE / "results.json").read_text())
    assert data["schema"] == SCHEMA and data["outcome"] == "anomaly"
    assert data["seed"] == 0 and data["canaries"]
    assert data["run_dir"] == "reports/sample/run"
    assert data["files"]["replay_file"] == "run.json"
    # It re-runs, twice the same (not compared with the recorded history: impl/ moves on,
    # and a sample records what it did when it was made).
    decisions, canaries, replicas, recorded = load_replay(SAMPLE / "run.json")
    assert len(decisions) == data["figures"]["shrunk_steps"]
    assert recorded["report"]["by_kind"] == data["anomalies"]["by_kind"]
    _, deterministic = replay_twice(decisions, canaries=canaries, replicas=replicas)
    assert deterministic
    assert 'id="first-anomaly"' in (SAMPLE / "timeline.html").read_text()


# -- the progress bar ----------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(**overrides: Any) -> Progress:
    values: dict[str, Any] = {
        "examples": 120,
        "budget": 300,
        "failing_examples": 0,
        "anomaly_kinds": (),
        "elapsed": 12.3,
    }
    values.update(overrides)
    return Progress(**values)


def test_render_with_a_time_budget() -> None:
    # Time only: the bar fills with the time spent.
    assert render(_progress(budget=0, elapsed=30.0, budget_seconds=60.0)) == (
        "[############------------] 120 examples, 30 s/60 s, anomalies: 0"
    )
    # Time and examples: whichever is further along.
    assert render(_progress(elapsed=6.0, budget_seconds=60.0)) == (
        "[#########---------------] 120/300 examples, 6 s/60 s, anomalies: 0"
    )


def test_render() -> None:
    assert render(_progress()) == "[#########---------------] 120/300 examples, 12 s, anomalies: 0"
    found = render(
        _progress(
            examples=410,
            failing_examples=7,
            anomaly_kinds=(AnomalyKind.DUPLICATE, AnomalyKind.LOST),
        ),
        label="per-process-counters",
        width=200,
    )
    assert found == (
        "per-process-counters: [########################] 410 examples, 12 s, "
        "FOUND duplicate, lost (shrinking, 7 failing)"
    )
    assert render(_progress(failing_examples=1, shrink=False)).endswith("FOUND ? (1 failing)")
    narrow = render(_progress(), width=30)
    assert len(narrow) == 29 and narrow.endswith("...")


def test_progress_bar_is_silent_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    pipe = io.StringIO()
    bar = ProgressBar(stream=pipe)
    bar(_progress())
    bar(_progress(finished=True))
    assert pipe.getvalue() == ""
    monkeypatch.setenv("TERM", "dumb")
    dumb = _Terminal()
    ProgressBar(stream=dumb)(_progress())
    assert dumb.getvalue() == ""


def test_progress_bar_draws_in_place_and_clears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    terminal = _Terminal()
    bar = ProgressBar(stream=terminal)
    bar(_progress(examples=1))
    bar(_progress(examples=2))  # within the redraw interval: skipped
    bar(_progress(finished=True))
    assert terminal.getvalue() == (
        "\r\x1b[K[------------------------] 1/300 examples, 12 s, anomalies: 0\r\x1b[K"
    )
    assert "\n" not in terminal.getvalue()


def test_run_campaign_reports_progress() -> None:
    seen: list[Progress] = []
    result = run_campaign(examples=5, seed=0, on_progress=seen.append)
    assert seen[-1].finished and not any(p.finished for p in seen[:-1])
    done = [p.examples for p in seen[:-1]]
    assert done == list(range(1, len(done) + 1))
    assert seen[-1].examples == result.examples
    assert {p.budget for p in seen} == {5}
    assert result.rule_steps is not None and result.rule_steps > 0


# A world crashed on purpose is abandoned mid-run: its trio tasks are finalized by the
# garbage collector. Collect them here, where they were made, so their finalizers' noise
# lands in this test (ignored) and not in whichever test runs when the collector does.
@pytest.mark.usefixtures("collect_crashed_worlds")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_crash_of_the_simulated_world_leaves_a_replay_file_that_reproduces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bug that makes a task of the world raise (here: every emit) crashes the world;
    # the decisions that led there are written like a failure's, and replay repeats it.
    async def broken_emit(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected crash")

    monkeypatch.setattr(GenerationJobManager, "emit_chunk", broken_emit)
    replay = tmp_path / "crash.json"
    result = run_campaign(examples=50, seed=0, replay_file=replay)
    assert result.crashed is not None and "injected crash" in result.crashed
    assert result.replay_file == replay
    # Shrunk by Hypothesis, then minimized like an anomaly's trace.
    assert result.shrunk_steps is not None and result.hypothesis_shrunk_steps is not None
    assert result.shrunk_steps <= result.hypothesis_shrunk_steps
    data = json.loads(replay.read_text())
    assert "injected crash" in data["crashed"]
    assert any(name in {"emit", "burst", "generate"} for name, _ in data["decisions"])
    decisions, canaries, replicas, _ = load_replay(replay)
    replayed, deterministic = replay_twice(decisions, canaries=canaries, replicas=replicas)
    assert deterministic and replayed.crashed is not None
    assert "injected crash" in replayed.crashed
    assert main(["replay", str(replay)]) == EXIT_ANOMALY
    assert "the simulated world CRASHED" in capsys.readouterr().out
