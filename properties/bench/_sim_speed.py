"""Benchmark 3: how fast the simulation explores, in rule steps and examples per second.

One rule step is one decision (:meth:`streamcheck.properties._simulation.Simulation.apply`): a rule
of the state machine, or one of the steps a macro rule is made of. The campaign is the
one ``streamcheck run`` runs (correct implementation, no shrinking, fixed seed), and the
rate is decisions over its whole wall time, so Hypothesis's own work, starting each
example's world and each example's heal phase count against it. The rate inside
``apply`` alone is reported too, to show where the rest goes.

The same campaign size then runs in one worker process per core (``streamcheck run
--workers``), timed from the call to the merged result, so starting the workers (a
fresh interpreter each) counts too. The goal is judged on that figure, what the
machine explores with the tool as it ships; the one-process figure stands beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from streamcheck.properties._campaign import run_campaign
from streamcheck.properties._parallel import run_in_workers
from streamcheck.properties._simulation import Decision, Simulation
from streamcheck.properties.bench._model import (
    BenchContext,
    Benchmark,
    BenchResult,
    Check,
    Figure,
    Goal,
    Op,
)

NAME = "sim-speed"
TITLE = "simulation speed: rule steps (decisions) and examples per second"
#: Fixed so two runs explore the same examples and their speeds can be compared.
SEED = 0
#: The figure the goal is judged on.
ALL_CORES = "rule steps/s, all cores (a worker process per core)"
GOAL = Goal(
    text=">= 2,000 rule steps/s (all cores)",
    checks=(Check(figure=ALL_CORES, op=Op.AT_LEAST, threshold=2000),),
)


@dataclass(slots=True)
class _Decisions:
    count: int = 0
    seconds: float = 0.0


@contextmanager
def _counting_decisions() -> Iterator[_Decisions]:
    """Count every decision applied while the block runs, and the time inside them.

    The campaign builds its own machine and simulations, so the count is taken where
    every decision passes: ``Simulation.apply``, wrapped for the block and restored.
    """
    tally = _Decisions()
    original = Simulation.apply

    def counting(self: Simulation, decision: Decision) -> None:
        started = time.perf_counter()
        try:
            original(self, decision)
        finally:
            tally.count += 1
            tally.seconds += time.perf_counter() - started

    Simulation.apply = counting  # type: ignore[method-assign]
    try:
        yield tally
    finally:
        Simulation.apply = original  # type: ignore[method-assign]


def run(context: BenchContext) -> BenchResult:
    examples = context.sizes.sim_examples
    with _counting_decisions() as decisions:
        result = run_campaign(examples=examples, seed=SEED, shrink=False)
    notes = [
        f"one process: {examples} examples requested (Hypothesis may run a few more), "
        f"seed {SEED}, no shrinking; rates over the campaign's whole wall time"
    ]
    if result.crashed:
        notes.append(f"the campaign crashed: {result.crashed.splitlines()[0]}")
    if result.found:
        kinds = ", ".join(k.value for k in result.anomaly_kinds)
        notes.append(f"the campaign found an anomaly ({kinds}); speed still measured")
    workers = os.cpu_count() or 1
    # Each worker runs one campaign of the same size, seeds SEED, SEED + 1, ...
    parallel = run_in_workers(workers, examples=examples * workers, chunk=examples, seed=SEED)
    notes.append(
        f"{workers} worker processes: {parallel.examples} examples, one campaign of "
        f"{examples} each, seeds {SEED}..{SEED + workers - 1}, in {parallel.seconds:.1f} s "
        "wall, starting the workers included"
    )
    if parallel.crashed or parallel.found:
        notes.append("the parallel run found an anomaly or crashed; speed still measured")
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=(
            Figure(
                name=ALL_CORES,
                value=(parallel.rule_steps or 0) / parallel.seconds,
                unit="steps/s",
            ),
            Figure(
                name="rule steps/s, one process",
                value=decisions.count / result.seconds,
                unit="steps/s",
            ),
            Figure(name="examples/s", value=result.examples / result.seconds, unit="examples/s"),
            Figure(
                name="rule steps/s inside apply only",
                value=decisions.count / decisions.seconds if decisions.seconds else 0.0,
                unit="steps/s",
            ),
            Figure(
                name="state-machine rules/s (a macro rule makes several steps)",
                value=(result.rules or 0) / result.seconds,
                unit="rules/s",
            ),
            Figure(name="rule steps", value=decisions.count, unit="steps"),
            Figure(name="examples", value=result.examples, unit="examples"),
        ),
        goal=GOAL,
        notes=tuple(notes),
        headline=ALL_CORES,
    )


BENCHMARK = Benchmark(name=NAME, title=TITLE, goal=GOAL, needs_redis=False, run=run)
