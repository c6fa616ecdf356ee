"""``streamcheck bench``: the command runs end to end and writes a well-formed report.

Benchmarks never run as timed assertions here: these tests run ``--quick`` through the
CLI entry point, in process, and check the report's shape (schema, every benchmark
present, measured or skipped with a reason, goals judged from figures), never the size
of a figure.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from streamcheck.properties.bench import NAMES, SCHEMA, _node
from streamcheck.properties.bench._gc_pauses import recording_gc_pauses
from streamcheck.properties.bench._model import (
    RATIO,
    Baseline,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
)
from streamcheck.properties.bench._report import format_ratio, key_figure
from streamcheck.properties.cli import EXIT_OK, EXIT_USAGE, main
from tests.redis_support import RedisServer, find_free_port, have_redis_binaries, scan_keys


def _only_report(reports: Path) -> dict[str, Any]:
    files = list(reports.glob("bench-*.json"))
    assert len(files) == 1, files
    data: dict[str, Any] = json.loads(files[0].read_text(encoding="utf-8"))
    return data


def _assert_well_formed(result: dict[str, Any]) -> None:
    """Shape only: every figure a finite number with a unit, the verdict consistent."""
    assert result["status"] in {"measured", "skipped", "error"}
    assert result["goal"] is not None and result["goal"]["checks"]
    if result["status"] == "measured":
        assert result["reason"] is None
        assert result["figures"]
        for figure in result["figures"]:
            assert isinstance(figure["name"], str) and figure["name"]
            assert isinstance(figure["value"], int | float) and math.isfinite(figure["value"])
            assert isinstance(figure["unit"], str) and figure["unit"]
        assert result["met"] in {True, False, None}
        if result["met"] is None:
            # Not judged only because --quick did not reach the goal's sizes.
            assert result["unmeasured"]
        if result["baseline"] is not None:
            assert result["baseline"]["source"]
            assert isinstance(result["ratio"], float)
    else:
        reason = result["reason"]
        assert isinstance(reason, str) and reason and "\n" not in reason
        assert result["figures"] == [] and result["met"] is None


@pytest.mark.skipif(not have_redis_binaries(), reason="redis-server is not on PATH")
def test_quick_bench_measures_every_benchmark_and_cleans_up_its_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A private server: the bench reads server-wide figures (CPU, command counts).
    with RedisServer() as server:
        code = main(["bench", "--quick", "--redis-url", server.url, "--reports", str(tmp_path)])
        left = scan_keys(server.port)

    assert code == EXIT_OK
    report = _only_report(tmp_path)
    assert report["schema"] == SCHEMA
    assert report["quick"] is True
    assert report["date"].endswith("+00:00")
    machine = report["machine"]
    assert isinstance(machine["cpu_count"], int)
    assert isinstance(machine["python"], str)
    assert isinstance(machine["redis_version"], str)
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == list(NAMES)
    for result in results.values():
        _assert_well_formed(result)
        assert result["status"] == "measured", result
    # Losses are correctness, not timing: the quick run must deliver everything.
    latency = {f["name"]: f["value"] for f in results["latency"]["figures"]}
    assert latency["lost (all runs)"] == 0 and latency["duplicated (all runs)"] == 0
    # The floor is measured beside ours at each stream count, and is the baseline.
    assert {"raw PUBLISH p99 @ 1 stream", "raw PUBLISH p99 @ 16 streams"} <= set(latency)
    assert results["latency"]["baseline"]["value"] == latency["raw PUBLISH p99 @ 16 streams"]
    throughput = {f["name"]: f["value"] for f in results["throughput"]["figures"]}
    assert throughput["lost"] == 0 and throughput["duplicated"] == 0
    # Read from the server, not computed here: a run that logged events used its CPU.
    assert throughput["Redis CPU per logged event (publish script, INFO commandstats)"] > 0
    baseline = results["throughput"]["baseline"]
    if baseline["name"] == "Node LibreChat path":
        # The Node comparator ran against the same server; its keys are gone too (below).
        assert throughput["Node events lost (both paths, all runs)"] == 0
        assert "logged events/s vs Node raw PUBLISH" in throughput
    else:  # no node on PATH, or npm could not install ioredis: the reason is given
        assert baseline["name"].startswith("raw ") and baseline["name"].endswith(" PUBLISH")
        assert "no Node comparator" in baseline["source"]
        assert not shutil.which("node") or "npm" in baseline["source"]

    printed = capsys.readouterr().out
    for name in NAMES:
        assert name in printed
    assert str(tmp_path / "bench-") in printed

    prefix = report["redis_key_prefix"]
    assert isinstance(prefix, str) and prefix.startswith("bench:")
    assert left == []


def test_unreachable_redis_skips_the_redis_benchmarks_and_runs_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = f"redis://127.0.0.1:{find_free_port()}"

    only = "emit-cost,idle-memory"
    argv = ["bench", "--quick", "--only", only, "--redis-url", nobody, "--reports", str(tmp_path)]

    code = main(argv)

    assert code == EXIT_OK
    report = _only_report(tmp_path)
    assert report["schema"] == SCHEMA
    assert report["machine"]["redis_version"] is None
    assert report["redis_key_prefix"] is None
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == ["emit-cost", "idle-memory"]
    for result in results.values():
        _assert_well_formed(result)
    assert results["emit-cost"]["status"] == "skipped"
    assert "Redis" in results["emit-cost"]["reason"]
    assert results["idle-memory"]["status"] == "measured"
    assert "skipped" in capsys.readouterr().out


def test_unknown_benchmark_name_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--only", "emit-cost,warp-speed", "--reports", str(tmp_path)])

    assert code == EXIT_USAGE
    assert "unknown benchmark 'warp-speed'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_redis_url_of_another_scheme_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--redis-url", "http://127.0.0.1:6379", "--reports", str(tmp_path)])

    assert code == EXIT_USAGE
    assert "--redis-url" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_help_names_the_benchmarks_and_gives_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "streamcheck bench --quick" in text
    for name in NAMES:
        assert name in text


@pytest.mark.parametrize(
    ("ratio", "printed"),
    [
        (1.28, "1.28x"),
        (1.3026, "1.303x"),
        (1.2996, "1.2996x"),
        (1.29996, "1.3000x"),
        (1.3, "1.30x"),
    ],
)
def test_a_ratio_beside_its_threshold_gets_the_digits_that_tell_them_apart(
    ratio: float, printed: str
) -> None:
    goal = Goal(text="<= 1.3x", checks=(Check(figure=RATIO, op=Op.AT_MOST, threshold=1.3),))
    assert format_ratio(BenchResult(name="n", title="t", ratio=ratio, goal=goal)) == printed


def test_the_key_figure_is_the_headline_with_its_ratio_else_the_ratio() -> None:
    floor = Baseline(name="raw floor p99", value=2.0, unit="ms", source="this run")
    p99 = Figure(name="p99 @ 256 streams", value=62.0, unit="ms")
    with_headline = BenchResult(
        name="n", title="t", figures=(p99,), baseline=floor, ratio=31.0, headline=p99.name
    )
    assert key_figure(with_headline) == "p99 @ 256 streams = 62.0 ms (31.00x raw floor p99)"
    ratio_only = BenchResult(name="n", title="t", figures=(p99,), baseline=floor, ratio=31.0)
    assert key_figure(ratio_only) == "31.00x raw floor p99"


def test_gc_pauses_are_recorded_while_the_block_runs_and_not_after() -> None:
    with recording_gc_pauses() as pauses:
        gc.collect()  # a full collection
        gc.collect(0)
    recorded = len(pauses.seconds)  # at least those two; the allocator may add one
    assert pauses.full_collections == 1 and recorded >= 2
    assert pauses.longest > 0
    gc.collect()
    assert pauses.full_collections == 1 and len(pauses.seconds) == recorded


def test_the_node_comparator_says_why_it_cannot_run_without_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(_node.NodeUnavailable, match="not on PATH"):
        _node.prepare(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_node_comparator_ships_as_package_data_with_its_lock() -> None:
    folder = resources.files("streamcheck.properties.bench").joinpath("node")
    package = json.loads(folder.joinpath("package.json").read_text(encoding="utf-8"))
    lock = json.loads(folder.joinpath("package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert "LIBRECHAT_PUBLISH" in folder.joinpath("comparator.mjs").read_text(encoding="utf-8")
