"""Which parts of impl/ a campaign reached: coverage.py over impl/ alone.

:func:`measure_impl` wraps a campaign in a coverage.py measurement of impl/ (line and
branch), and :class:`ImplCoverage` holds the result as a per-module table. The
coverage labels (:data:`streamcheck.properties._campaign.REQUIRED_LABELS`) say which
situations the simulated *world* produced; the branch classes here say which code of
*impl/* ran because of them, so a world change that stops exercising the fence or the
cross-replica abort path fails CI even when every label is still reached.

Each class lists markers that must all be reached. A marker is
``<file under impl/>:<function qualname>`` (the function's body was entered) or
``<file>:<qualname>::<text>`` (a line of that function containing ``text`` ran).
Markers name code, not line numbers, so edits elsewhere do not move them; a marker
that no longer matches anything is reported as stale, so a rename cannot silently
empty a class.
"""

from __future__ import annotations

import ast
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coverage

import streamcheck.impl

IMPL_DIR = Path(streamcheck.impl.__file__).resolve().parent

#: Code paths that matter, each reached by the CI profile's campaign
#: (tests/test_impl_coverage.py). See docs/simulation.md, "Coverage of impl/".
BRANCH_CLASSES: Mapping[str, tuple[str, ...]] = {
    "fence refusals": (
        "transport/_redis_bus.py:RedisBus._publish_outcome::self._counters.refused += 1",
        "_manager.py:GenerationJobManager._published::job.stop(StopReason.ABORTED)",
    ),
    "abort delivery across replicas": (
        "transport/_redis_bus.py:RedisBus.publish_abort",
        "transport/_actor.py:StreamActor._obey_abort::callback()",
        "_manager.py:GenerationJobManager.abort_job",
    ),
    "untrusted channel": (
        'transport/_envelope.py:_decode_object::raise MalformedPayload(f"seq is not an integer',
        "_reorder.py:ReorderBuffer.offer::self._foreign_hints += 1",
        "_reorder.py:ReorderBuffer._drop_unconfirmed",
        "transport/_actor.py:StreamActor._fail_readers",
        "transport/_actor.py:StreamActor._obey_abort::self._totals.unconfirmed_aborts += 1",
    ),
    "job-store transitions": (
        "jobstore/_redis.py:RedisJobStore.create_job",
        "jobstore/_redis.py:RedisJobStore.update_job::await self._unindex(self._keys.running",
        "jobstore/_redis.py:RedisJobStore.update_job::raise IllegalTransition(",
        "jobstore/_redis.py:RedisJobStore.cleanup",
    ),
}


@dataclass(frozen=True, slots=True)
class ModuleCoverage:
    #: The module's path under impl/ (``transport/_actor.py``).
    module: str
    statements: int
    covered: int
    branches: int
    covered_branches: int
    #: Lines that ran (1-based), for the branch classes.
    executed: frozenset[int] = field(default_factory=frozenset)

    @property
    def percent(self) -> float:
        total = self.statements + self.branches
        return 100.0 * (self.covered + self.covered_branches) / total if total else 100.0


@dataclass(frozen=True, slots=True)
class ClassVerdict:
    name: str
    reached: tuple[str, ...]
    missed: tuple[str, ...]
    #: Markers that match no code any more (the class must be updated).
    stale: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missed and not self.stale


@dataclass(frozen=True, slots=True)
class ImplCoverage:
    modules: tuple[ModuleCoverage, ...]

    def module(self, path: str) -> ModuleCoverage | None:
        return next((m for m in self.modules if m.module == path), None)

    def verdicts(
        self, classes: Mapping[str, tuple[str, ...]] = BRANCH_CLASSES
    ) -> tuple[ClassVerdict, ...]:
        out = []
        for name, markers in classes.items():
            reached: list[str] = []
            missed: list[str] = []
            stale: list[str] = []
            for marker in markers:
                lines = marker_lines(marker)
                if not lines:
                    stale.append(marker)
                    continue
                found = self.module(marker.split(":", 1)[0])
                ran = found is not None and bool(lines & found.executed)
                (reached if ran else missed).append(marker)
            out.append(ClassVerdict(name, tuple(reached), tuple(missed), tuple(stale)))
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "modules": [
                {
                    "module": m.module,
                    "statements": m.statements,
                    "covered": m.covered,
                    "branches": m.branches,
                    "covered_branches": m.covered_branches,
                    "percent": round(m.percent, 1),
                }
                for m in self.modules
            ],
            "branch_classes": [
                {
                    "name": v.name,
                    "reached": list(v.reached),
                    "missed": list(v.missed),
                    "stale": list(v.stale),
                }
                for v in self.verdicts()
            ],
        }


def marker_lines(marker: str) -> frozenset[int]:
    """The lines a marker stands for: a function's body, or its lines containing the
    marker's text; empty when the file, function or text is not there."""
    location, _, text = marker.partition("::")
    path, _, qualname = location.partition(":")
    source_file = IMPL_DIR / path
    if not qualname or not source_file.is_file():
        return frozenset()
    source = source_file.read_text(encoding="utf-8")
    function = _find(ast.parse(source), qualname.split("."))
    if function is None:
        return frozenset()
    first = function.body[0].lineno
    last = function.end_lineno or first
    if not text:
        return frozenset(range(first, last + 1))
    lines = source.splitlines()
    return frozenset(n for n in range(first, last + 1) if text in lines[n - 1])


def _find(node: ast.AST, names: list[str]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    head, rest = names[0], names[1:]
    for child in ast.iter_child_nodes(node):
        if getattr(child, "name", None) != head:
            continue
        if not rest and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            return child
        if rest and isinstance(child, ast.ClassDef):
            return _find(child, rest)
    return None


@contextmanager
def measure_impl() -> Iterator[list[ImplCoverage]]:
    """Measure impl/ (lines and branches) for the duration of the block; the yielded
    list holds the :class:`ImplCoverage` once the block has ended."""
    out: list[ImplCoverage] = []
    cov = coverage.Coverage(data_file=None, branch=True, source=[str(IMPL_DIR)], config_file=False)
    cov.start()
    try:
        yield out
    finally:
        cov.stop()
    out.append(_table(cov))


def _table(cov: coverage.Coverage) -> ImplCoverage:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "coverage.json"
        cov.json_report(outfile=str(report))
        files: dict[str, Any] = json.loads(report.read_text())["files"]
    modules = []
    for filename, entry in files.items():
        summary = entry["summary"]
        modules.append(
            ModuleCoverage(
                module=Path(filename).resolve().relative_to(IMPL_DIR).as_posix(),
                statements=summary["num_statements"],
                covered=summary["covered_lines"],
                branches=summary.get("num_branches", 0),
                covered_branches=summary.get("covered_branches", 0),
                executed=frozenset(entry["executed_lines"]),
            )
        )
    return ImplCoverage(tuple(sorted(modules, key=lambda m: m.module)))
