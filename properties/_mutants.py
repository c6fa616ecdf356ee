"""A mutation score for impl/, with the simulation as the only test (docs/mutation.md).

Cosmic Ray (PyPI ``cosmic-ray``) enumerates the mutations of every impl/ module and
applies one at a time; its test runner runs our command with a timeout. We sample the
mutations (seeded, so a sample can be repeated), and the command is one campaign
(:mod:`streamcheck.properties._mutant_probe`).

The mutations are made in a copy of the package (``streamcheck/`` with its links to
model/, impl/ and properties/ resolved), never in the working tree, and the campaign
runs as ``python -P`` with ``PYTHONPATH`` set to the copy, so it imports the mutated
impl/ rather than the installed one (checked before the first mutant).

Verdicts follow Cosmic Ray: the command's non-zero exit kills a mutant, and so does a
timeout (kept apart here as ``timeout``, counted as killed). Mutants inside an
annotation (never evaluated in impl/) and those listed in :data:`EQUIVALENT` cannot
change behaviour: they are reported ``equivalent``, not run, and left out of the score.
"""

from __future__ import annotations

import ast
import fnmatch
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmic_ray.commands import init
from cosmic_ray.mutating import mutate_and_test
from cosmic_ray.testing import run_tests
from cosmic_ray.work_db import use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkItem

import streamcheck
from streamcheck.properties._run_limits import SimBackend

VERDICTS = ("killed", "timeout", "survived", "equivalent", "incompetent", "not run")


@dataclass(frozen=True, slots=True)
class Equivalent:
    """A mutation that cannot change what impl/ does, named by what it changes (not by
    occurrence numbers, which move when the module is edited)."""

    module: str
    #: Cosmic Ray's operator (``""``: any).
    operator: str
    #: The mutated line, stripped, as the mutant reads (with ``any_change``: the
    #: original line, every mutation of which is equivalent).
    line: str
    why: str
    any_change: bool = False


_STATISTIC = "a statistic: only statistics() reports it, nothing in impl/ reads it"
_LATE_FILL = (
    "decides only whether a late fill is counted (the late_fills statistic): the line "
    "or the helper it calls chooses nothing the reader gets; " + _STATISTIC
)

#: Mutants judged equivalent by reading them (docs/mutation.md says how to add one).
EQUIVALENT: tuple[Equivalent, ...] = (
    Equivalent("transport/_redis_bus.py", "NumberReplacer", "published: int = -1", _STATISTIC),
    Equivalent("transport/_redis_bus.py", "NumberReplacer", "published: int = 1", _STATISTIC),
    Equivalent("transport/_transport.py", "NumberReplacer", "self._untracked += 0", _STATISTIC),
    Equivalent("transport/_transport.py", "NumberReplacer", "self._untracked += 2", _STATISTIC),
    Equivalent(
        "_reorder.py",
        "NumberReplacer",
        "self._repaired_events += sum( 2 for e in step.deliver if not isinstance(e, Gap))",
        _STATISTIC + " (and twice a count is zero exactly when the count is)",
    ),
    # Every line that only counts for statistics(), whatever the mutation.
    *(
        Equivalent(module, "", line, _STATISTIC, any_change=True)
        for module, lines in (
            (
                "_reorder.py",
                (
                    *(
                        f"self._{name} = 0"
                        for name in (
                            "delivered",
                            "duplicates",
                            "foreign",
                            "repairs",
                            "gaps",
                            "late_fills",
                            "repaired_events",
                            "probe_repaired_events",
                            "foreign_hints",
                        )
                    ),
                    "self._delivered += 1",
                    "self._duplicates += 1",
                    "self._foreign += 1",
                    "self._repairs += 1",
                    "self._gaps += 1",
                    "self._late_fills += 1",
                    "self._foreign_hints += 1",
                    *(
                        f"self._{name} += sum(1 for e in step.deliver if not isinstance(e, Gap))"
                        for name in ("repaired_events", "probe_repaired_events")
                    ),
                ),
            ),
            (
                "transport/_redis_bus.py",
                (
                    *(
                        f"{name}: int = 0"
                        for name in ("published", "refused", "regressions", "reconnects")
                    ),
                    *(
                        f"self._counters.{name} += 1"
                        for name in ("published", "refused", "regressions", "reconnects")
                    ),
                ),
            ),
            (
                "transport/_actor.py",
                (
                    "malformed: int = 0",
                    "abort_signals: int = 0",
                    "self._counts.malformed += 1",
                    "self._counts.abort_signals += 1",
                ),
            ),
            (
                "transport/_transport.py",
                ("self._untracked = 0", "self._untracked += 1", "self._malformed += 1"),
            ),
        )
        for line in lines
    ),
    *(
        Equivalent("_reorder.py", "", line, _LATE_FILL, any_change=True)
        for line in (
            "event.seq == step_first_seq(step)",
            "and waiting > 1",
            "and len(self._pending) < waiting - 1",
            "if not isinstance(event, Gap):",
        )
    ),
    Equivalent("transport/_transport.py", "", "self._malformed = 0", _STATISTIC, any_change=True),
    Equivalent(
        "_early_buffer.py",
        "",
        "MAX_BYTES = 8 * 1024 * 1024",
        "the default of EarlyBuffer.max_bytes, which impl/ never uses: its one maker "
        "(GenerationJobManager._early_buffer) always passes the manager's setting, and "
        "EarlyBuffer is not public",
        any_change=True,
    ),
    Equivalent(
        "_early_buffer.py",
        "",
        "MAX_EVENTS = 5_000",
        "the default of EarlyBuffer.max_events, which impl/ never uses: its one maker "
        "(GenerationJobManager._early_buffer) always passes the manager's setting, and "
        "EarlyBuffer is not public",
        any_change=True,
    ),
    Equivalent(
        "transport/_transport.py",
        "ReplaceComparisonOperator_Is_Eq",
        "if (entry := self._actors.get(stream_id)) is not None and entry[0] == actor:",
        "StreamActor defines no __eq__, so == falls back to the identity test is makes",
    ),
    Equivalent(
        "transport/_commands.py",
        "ReplaceTrueWithFalse",
        "@dataclass(frozen=True, slots=False)",
        "__slots__ only saves memory here: the actor's commands are frozen either way, "
        "internal to the transport, and never pickled, weak-referenced or given new "
        "attributes",
    ),
)


#: impl/ modules the simulation does not drive, by design: the coredis and glide adapters,
#: the client choice and the batching (the simulation stands in for Redis at the RedisLike
#: seam) and the configuration loader. tests/ covers them with contract tests; here their
#: mutants could only die at import.
NOT_SIMULATED = (
    "_config.py",
    "redis/_batching.py",
    "redis/_coredis*.py",
    "redis/_glide*.py",
    "redis/_open.py",
)
#: impl/ modules only the memory backend runs: their mutants meet a campaign over it
#: (``streamcheck run --backend memory``); every other module's, the simulated Redis.
MEMORY_BACKEND_MODULES = ("jobstore/_memory.py", "transport/_memory_bus.py")


def campaign_backend(module: str) -> SimBackend:
    """The backend whose campaign judges a mutant of ``module`` (a path under impl/)."""
    if any(fnmatch.fnmatch(module, pattern) for pattern in MEMORY_BACKEND_MODULES):
        return SimBackend.MEMORY
    return SimBackend.REDIS


class MutantsError(Exception):
    """The mutation run cannot start (the campaign fails on unmutated code, ...)."""


@dataclass(frozen=True, slots=True)
class MutantResult:
    #: Path under impl/ (``transport/_actor.py``).
    module: str
    operator: str
    occurrence: int
    line: int
    function: str
    verdict: str
    seconds: float
    diff: str

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "operator": self.operator,
            "occurrence": self.occurrence,
            "line": self.line,
            "function": self.function,
            "verdict": self.verdict,
            "seconds": round(self.seconds, 1),
            "diff": self.diff,
        }


@dataclass(frozen=True, slots=True)
class MutationRun:
    mutants: tuple[MutantResult, ...]
    #: Mutations Cosmic Ray found in impl/ (the population sampled).
    population: int
    sample_seed: int
    examples: int
    campaign_seed: int
    timeout: float
    baseline_seconds: float
    seconds: float

    def counts(self, module: str | None = None) -> Counter[str]:
        return Counter(m.verdict for m in self.mutants if module in (None, m.module))

    def score(self, module: str | None = None) -> float | None:
        """Killed (timeouts included) over killed and survived, in percent."""
        counts = self.counts(module)
        killed = counts["killed"] + counts["timeout"]
        judged = killed + counts["survived"]
        return 100.0 * killed / judged if judged else None

    @property
    def modules(self) -> list[str]:
        return sorted({m.module for m in self.mutants})


def mutation_command(
    root: Path, *, examples: int, seed: int, backend: SimBackend = SimBackend.REDIS
) -> str:
    """The test command for a mutant in the copy at ``root``, judged by a campaign
    over ``backend``."""
    return shlex.join(
        [
            "env",
            f"PYTHONPATH={root}",
            sys.executable,
            "-P",
            "-m",
            "streamcheck.properties._mutant_probe",
            "--examples",
            str(examples),
            "--seed",
            str(seed),
            "--backend",
            backend.value,
        ]
    )


@contextmanager
def package_copy() -> Iterator[Path]:
    """A temporary copy of the installed ``streamcheck`` package (links resolved);
    yields the directory to put on ``PYTHONPATH``."""
    source = Path(streamcheck.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="streamcheck-mutants-") as scratch:
        root = Path(scratch)
        shutil.copytree(
            source,
            root / "streamcheck",
            symlinks=False,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        yield root


def _check_imports_copy(root: Path) -> None:
    probe = shlex.join(
        [
            "env",
            f"PYTHONPATH={root}",
            sys.executable,
            "-P",
            "-c",
            "import streamcheck.impl; print(streamcheck.impl.__file__)",
        ]
    )
    outcome, output = run_tests(probe, 60)
    where = output.strip()
    if outcome is not TestOutcome.SURVIVED or not where.startswith(str(root)):
        raise MutantsError(f"the campaign would not import the mutated copy: {where[-500:]}")


def _is_equivalent(module: str, operator: str, diff: str) -> bool:
    lines = diff.splitlines()
    added = [line[1:].strip() for line in lines if line[:1] == "+" and line[:3] != "+++"]
    removed = [line[1:].strip() for line in lines if line[:1] == "-" and line[:3] != "---"]
    return any(
        e.module == module
        and operator.endswith(e.operator)
        and e.line in (removed if e.any_change else added)
        for e in EQUIVALENT
    )


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where ``path``'s annotations are ((line, column) from, to). impl/ modules use
    ``from __future__ import annotations``, so an annotation is never evaluated and a
    mutant inside one is equivalent by construction."""
    source = path.read_text(encoding="utf-8")
    if "from __future__ import annotations" not in source:
        return []
    spans = []
    for node in ast.walk(ast.parse(source)):
        found: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        for ann in found:
            if ann is not None and ann.end_lineno is not None and ann.end_col_offset is not None:
                spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno, ann.end_col_offset)))
    return spans


def _in_annotation(
    spans: list[tuple[tuple[int, int], tuple[int, int]]], start: tuple[int, int]
) -> bool:
    return any(low <= start < high for low, high in spans)


def _verdict(module: str, operator: str, outcome: Any) -> str:
    if outcome.worker_outcome is not WorkerOutcome.NORMAL:
        return "incompetent"
    if outcome.test_outcome is TestOutcome.INCOMPETENT:
        return "incompetent"
    if outcome.test_outcome is TestOutcome.SURVIVED:
        return "equivalent" if _is_equivalent(module, operator, outcome.diff or "") else "survived"
    return "timeout" if outcome.output == "timeout" else "killed"


#: The unmutated campaign's bound: it sets every mutant's timeout, so it gets its own.
BASELINE_LIMIT_S = 900.0


def mutant_timeout(asked: float | None, baseline: float, backend: SimBackend) -> float:
    """One mutant's time limit: ``asked``, or three times the unmutated campaign plus 10 s.

    A limit under 1.5 times the unmutated campaign is refused: every mutant would time
    out, and a timeout counts as killed, so the score would measure the machine's load.
    """
    if asked is None:
        return 3 * baseline + 10
    if asked < 1.5 * baseline:
        raise MutantsError(
            f"--timeout {asked:g} s is too short: the unmutated campaign took {baseline:.0f} s "
            f"on backend {backend.value} (a loaded machine?); give at least 1.5 times that, "
            "or leave the default"
        )
    return asked


def run_mutants(
    *,
    sample: int,
    sample_seed: int = 0,
    examples: int = 300,
    campaign_seed: int = 0,
    budget: float | None = None,
    timeout: float | None = None,
    exclude: tuple[str, ...] = NOT_SIMULATED,
    include: tuple[str, ...] = ("*",),
    on_mutant: Callable[[int, int, MutantResult], None] | None = None,
) -> MutationRun:
    """Sample ``sample`` of impl/'s mutations and run the campaign against each.

    ``timeout`` (default: three times the unmutated campaign's time plus 10 s, per
    backend; refused when under 1.5 times that time) bounds one mutant; ``budget`` stops
    starting mutants after that many seconds of mutants, the unmutated campaigns not
    counted (the rest are reported ``not run``). Only modules matching a pattern of
    ``include`` and none of ``exclude`` (paths under impl/, fnmatch) are mutated. A
    mutant's campaign runs on the backend that runs its module (:func:`campaign_backend`).
    """
    if sample < 1:
        raise ValueError(f"the sample must be at least 1 mutant, not {sample}")
    started = time.perf_counter()
    with package_copy() as root:
        _check_imports_copy(root)
        impl = root / "streamcheck" / "impl"
        modules = [
            path
            for path in sorted(impl.rglob("*.py"))
            if not any(fnmatch.fnmatch(path.relative_to(impl).as_posix(), p) for p in exclude)
            and any(fnmatch.fnmatch(path.relative_to(impl).as_posix(), p) for p in include)
        ]
        commands: dict[SimBackend, str] = {}
        limits: dict[SimBackend, float] = {}
        baselines: dict[SimBackend, float] = {}
        for backend in sorted(
            {campaign_backend(path.relative_to(impl).as_posix()) for path in modules},
            key=lambda b: b.value,
        ):
            command = mutation_command(root, examples=examples, seed=campaign_seed, backend=backend)
            before = time.perf_counter()
            outcome, output = run_tests(command, BASELINE_LIMIT_S)
            baselines[backend] = time.perf_counter() - before
            if outcome is not TestOutcome.SURVIVED:
                raise MutantsError(
                    f"the campaign fails on unmutated impl/ ({examples} examples, seed "
                    f"{campaign_seed}, backend {backend.value}): {output.strip()[-1000:]}"
                )
            commands[backend] = command
            limits[backend] = mutant_timeout(timeout, baselines[backend], backend)
        # The budget is for mutants: the unmutated campaigns above take what the machine's
        # load makes them take, and must not eat it (on a loaded machine they once did,
        # and no mutant ran).
        mutants_started = time.perf_counter()
        with use_db(str(root / "session.sqlite")) as db:
            init(modules, db, {})
            items: list[WorkItem] = sorted(
                db.work_items,
                key=lambda w: (
                    str(w.mutations[0].module_path),
                    w.mutations[0].operator_name,
                    w.mutations[0].occurrence,
                ),
            )
        chosen = random.Random(sample_seed).sample(items, min(sample, len(items)))
        chosen.sort(key=lambda w: (str(w.mutations[0].module_path), w.mutations[0].occurrence))
        results = []
        spans: dict[Path, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
        for index, item in enumerate(chosen, 1):
            spec = item.mutations[0]
            module = Path(spec.module_path).relative_to(impl).as_posix()
            operator = spec.operator_name.removeprefix("core/")
            out_of_time = budget is not None and time.perf_counter() - mutants_started >= budget
            mutant_started = time.perf_counter()
            path = Path(spec.module_path)
            if path not in spans:
                spans[path] = _annotation_spans(path)
            if _in_annotation(spans[path], (spec.start_pos[0], spec.start_pos[1])):
                verdict, diff = "equivalent", f"(in an annotation) line {spec.start_pos[0]}"
            elif out_of_time:
                verdict, diff = "not run", ""
            else:
                backend = campaign_backend(module)
                work = mutate_and_test(item.mutations, commands[backend], limits[backend])
                verdict, diff = _verdict(module, operator, work), work.diff or ""
            result = MutantResult(
                module=module,
                operator=operator,
                occurrence=spec.occurrence,
                line=spec.start_pos[0],
                function=spec.definition_name or "",
                verdict=verdict,
                seconds=time.perf_counter() - mutant_started,
                diff=diff.replace(str(root), ""),
            )
            results.append(result)
            if on_mutant is not None:
                on_mutant(index, len(chosen), result)
    return MutationRun(
        mutants=tuple(results),
        population=len(items),
        sample_seed=sample_seed,
        examples=examples,
        campaign_seed=campaign_seed,
        timeout=max(limits.values(), default=0.0),
        baseline_seconds=max(baselines.values(), default=0.0),
        seconds=time.perf_counter() - started,
    )


def render(run: MutationRun, *, command: str, date: str) -> str:
    """The Markdown report: the score, a table by module, and every surviving mutant."""
    score = run.score()
    lines = [
        f"# Mutation score of impl/: {'-' if score is None else f'{score:.1f} %'}",
        "",
        f"`{command}` on {date}: {len(run.mutants)} of {run.population} mutations "
        f"(sample seed {run.sample_seed}), each against one campaign of {run.examples} "
        f"examples (seed {run.campaign_seed}); {run.seconds:.0f} s in all, the unmutated "
        f"campaign {run.baseline_seconds:.1f} s, timeout {run.timeout:.0f} s per mutant.",
        "",
        "Score: killed (timeouts included, Cosmic Ray's convention) over killed and "
        "survived; equivalent mutants are left out.",
        "",
        "| module | " + " | ".join(VERDICTS) + " | score |",
        "|---" * (len(VERDICTS) + 2) + "|",
    ]
    for module in [*run.modules, None]:
        counts = run.counts(module)
        part = run.score(module)
        name = module or "**all**"
        cells = " | ".join(str(counts[v]) for v in VERDICTS)
        lines.append(f"| {name} | {cells} | {'-' if part is None else f'{part:.0f} %'} |")
    for title, verdict in (("Surviving mutants", "survived"), ("Equivalent", "equivalent")):
        listed = [m for m in run.mutants if m.verdict == verdict]
        if not listed:
            continue
        lines += ["", f"## {title}", ""]
        for m in listed:
            where = f"- `{m.module}:{m.line}` in `{m.function}` ({m.operator})"
            changed = [
                f"  {d}"
                for d in m.diff.splitlines()
                if d[:1] in "+-" and d[:3] not in ("+++", "---")
            ]
            if not changed:  # judged without running: the diff holds the reason
                lines.append(f"{where}: {m.diff}")
                continue
            lines += [where, "", "  ```diff", *changed, "  ```"]
    return "\n".join(lines) + "\n"


def to_json(run: MutationRun, *, command: str, date: str) -> dict[str, Any]:
    return {
        "schema": "streamcheck.mutants/1",
        "command": command,
        "date": date,
        "score": None if run.score() is None else round(run.score() or 0.0, 1),
        "population": run.population,
        "sample_seed": run.sample_seed,
        "examples": run.examples,
        "campaign_seed": run.campaign_seed,
        "timeout_seconds": round(run.timeout, 1),
        "baseline_seconds": round(run.baseline_seconds, 1),
        "seconds": round(run.seconds, 1),
        "by_module": {
            m: {**{v: run.counts(m)[v] for v in VERDICTS}, "score": run.score(m)}
            for m in run.modules
        },
        "mutants": [m.to_json() for m in run.mutants],
    }
