"""Replay files are validated on load: a file that cannot be replayed as it is gets a
:class:`ReplayFileError` naming the field, and ``streamcheck replay`` says that in one
line with exit code 2. Files written now carry ``"version": 2``; the committed samples
(``"format": 1``) still load."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streamcheck.properties._replay import load_replay, run_decisions, write_replay_file
from streamcheck.properties._replay_schema import REPLAY_VERSION, ReplayFileError
from streamcheck.properties._simulation import Decision
from streamcheck.properties.cli import EXIT_USAGE, main

SAMPLES = Path(__file__).parent.parent / "reports" / "sample"
#: Committed replay files of version 1 (``format``), kept as they were written. (The
#: sample run's own ``run.json`` is written again whenever the run is, as the current
#: version.)
SAMPLE_FILES = [SAMPLES / "canary-per-process-counters.json"]


def _sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE_FILES[0].read_text())
    return data


def _with(change: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    data = {k: v for k, v in _sample().items() if k not in drop}
    data.update(change)
    return data


def _decision(index: int, name: str, args: object) -> dict[str, Any]:
    data = _sample()
    data["decisions"][index] = [name, args]
    return data


CASES = [
    pytest.param([], "(file)", "must be a JSON object, not an array", id="array"),
    pytest.param("run.json", "(file)", "must be a JSON object", id="string"),
    pytest.param(_with({}, drop=("format",)), "version", "missing", id="no-version"),
    pytest.param(
        _with({"version": 7}, drop=("format",)), "version", "unsupported version 7", id="v7"
    ),
    pytest.param(_with({"format": "1"}), "format", "unsupported version '1'", id="v1-string"),
    pytest.param(_with({"replicas": 99}), "replicas", "must be 2 to 8, not 99", id="replicas"),
    pytest.param(_with({"replicas": True}), "replicas", "must be an integer", id="replicas-bool"),
    pytest.param(_with({}, drop=("decisions",)), "decisions", "missing", id="no-decisions"),
    pytest.param(_with({"decisions": {}}), "decisions", "must be a list", id="decisions-object"),
    pytest.param(_with({"canaries": [3]}), "canaries[0]", "must be a string", id="canary-type"),
    pytest.param(
        _with({"canaries": ["no-such"]}), "canaries[0]", "unknown canary 'no-such'", id="canary"
    ),
    pytest.param(_decision(3, "warp", {}), "decisions[3].name", "unknown decision", id="unknown"),
    pytest.param(
        _decision(3, "create", {"stream": "s1"}),
        "decisions[3].args.replica",
        "missing ('create' takes stream, replica)",
        id="missing-argument",
    ),
    pytest.param(
        _decision(3, "create", {"stream": "s1", "replica": 2}),
        "decisions[3].args.replica",
        "must be 0 to 1, not 2",
        id="replica-range",
    ),
    pytest.param(
        _decision(3, "create", {"stream": "s1", "replica": True}),
        "decisions[3].args.replica",
        "must be an integer",
        id="replica-bool",
    ),
    pytest.param(
        _decision(3, "create", {"stream": "", "replica": 0}),
        "decisions[3].args.stream",
        "must not be empty",
        id="stream-empty",
    ),
    pytest.param(
        _decision(3, "settle", {"now": 1}),
        "decisions[3].args.now",
        "not an argument of 'settle' (it takes no arguments)",
        id="extra-argument",
    ),
    pytest.param(
        _decision(3, "pct", {"seed": 1, "depth": 0}),
        "decisions[3].args.depth",
        "must be at least 1, not 0",
        id="depth",
    ),
    pytest.param(
        _decision(3, "jump", {"dt": -0.5}), "decisions[3].args.dt", "at least 0", id="dt-negative"
    ),
    pytest.param(
        _decision(3, "jump", {"dt": "1"}), "decisions[3].args.dt", "must be a number", id="dt"
    ),
    pytest.param(
        _decision(3, "finish", {"stream": "s1", "error": 0}),
        "decisions[3].args.error",
        "must be true or false",
        id="bool",
    ),
    pytest.param(
        _decision(3, "reconnect", {"which": 0, "replica": 0, "mode": "teleport"}),
        "decisions[3].args.mode",
        "must be one of resume, subscribe",
        id="mode",
    ),
    pytest.param(_decision(3, "settle", []), "decisions[3].args", "must be an object", id="args"),
    pytest.param(
        _with({"decisions": [["settle"]]}), "decisions[0]", "a [name, args] pair", id="pair"
    ),
    pytest.param(_with({"history": [1]}), "history[0]", "must be an object", id="history"),
    pytest.param(_with({"crashed": 1}), "crashed", "a string or null", id="crashed"),
]


@pytest.mark.parametrize(("content", "field", "problem"), CASES)
def test_a_file_that_cannot_be_replayed_names_the_field(
    content: object, field: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ReplayFileError) as error:
        load_replay(path)
    assert error.value.field == field
    assert problem in error.value.problem


#: The cases the issue saw accepted or crashing: an array, 99 replicas, an unknown
#: decision, a decision missing an argument.
SEEN = [c for c in CASES if c.id in {"array", "replicas", "unknown", "missing-argument"}]


@pytest.mark.parametrize(("content", "field", "problem"), SEEN)
def test_replay_reports_a_bad_file_in_one_line_with_exit_2(
    content: object, field: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    assert main(["replay", str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.err.startswith(f"streamcheck replay: {path}: {field}: {problem}")
    assert captured.err.count("\n") == 1 and captured.out == ""


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"not json", "(file): not JSON"), (b"\xff\xfe", "(file): not JSON")],
)
def test_a_file_that_is_not_json_is_refused(content: bytes, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ReplayFileError, match=rf"^{re.escape(problem)}"):
        load_replay(path)


def test_an_index_taken_modulo_a_count_may_be_negative(tmp_path: Path) -> None:
    # The machine reconnects "the latest session" as which=-1.
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(_decision(3, "detach", {"which": -1})))
    assert load_replay(path)[0][3].args == {"which": -1}


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_the_committed_version_1_samples_still_load(path: Path) -> None:
    decisions, canaries, replicas, data = load_replay(path)
    assert data["format"] == 1
    assert decisions and canaries and replicas == 2


def test_a_written_file_carries_the_version_and_loads_back(tmp_path: Path) -> None:
    decisions, canaries, replicas, _ = load_replay(SAMPLE_FILES[0])
    path = tmp_path / "again.json"
    with run_decisions(decisions, canaries=canaries, replicas=replicas) as (simulation, report):
        write_replay_file(path, name="again", simulation=simulation, report=report)
    data = json.loads(path.read_text())
    assert data["version"] == REPLAY_VERSION and "format" not in data
    assert load_replay(path)[:3] == (decisions, canaries, replicas)


def test_writing_a_file_that_would_not_load_fails_the_run_that_made_it(tmp_path: Path) -> None:
    # The world takes replica indexes modulo its replicas; the file format does not.
    decisions = [Decision("create", {"stream": "s1", "replica": 5}), Decision("settle", {})]
    path = tmp_path / "out-of-schema.json"
    refused = pytest.raises(ReplayFileError, match=r"^decisions\[0\]\.args\.replica: must be 0")
    with (
        run_decisions(decisions, canaries=frozenset(), replicas=2) as (simulation, report),
        refused,
    ):
        write_replay_file(path, name="bad", simulation=simulation, report=report)
    assert json.loads(path.read_text())["decisions"][0] == [
        "create",
        {"replica": 5, "stream": "s1"},
    ]
