"""Running the state machine as a campaign: budgets, canaries, timing, replay files.

Used by the CLI (``streamcheck run``, ``streamcheck canaries``) and the test suite, so
that what CI checks and what a person runs are the same thing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import HypothesisException
from hypothesis.stateful import get_state_machine_test

from impl._canaries import Canary
from model import AnomalyKind
from properties.machine import StreamMachine, machine_for


@dataclass(frozen=True, slots=True)
class CampaignResult:
    canaries: frozenset[Canary]
    examples: int
    seconds: float
    anomaly_kinds: tuple[AnomalyKind, ...]
    #: Examples and wall seconds until the first failing example (None: none failed).
    first_failure_example: int | None
    first_failure_seconds: float | None
    shrunk_steps: int | None
    replay_file: Path | None
    crashed: str | None = None
    #: Rare paths reached, with how many examples reached each.
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.first_failure_example is not None


@contextmanager
def _quiet() -> Iterator[None]:
    # impl logs every simulated reconnect; the run's report says what matters.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def campaign_settings(examples: int, *, shrink: bool = True, steps: int = 30) -> settings:
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        database=None,
        print_blob=True,
        report_multiple_bugs=False,
    )


def run_campaign(
    *,
    canaries: frozenset[Canary] = frozenset(),
    examples: int = 200,
    seed: int | None = None,
    replay_file: Path | None = None,
    shrink: bool = True,
) -> CampaignResult:
    """Run the machine until ``examples`` pass or one fails (then shrink it)."""
    machine = machine_for(canaries, failure_path=replay_file)
    counter = _Counter(machine)
    started = time.perf_counter()
    crashed: str | None = None
    with _quiet():
        try:
            test = get_state_machine_test(
                machine, settings=campaign_settings(examples, shrink=shrink)
            )
            if seed is not None:
                # The same seed explores the same examples; different seeds, different ones.
                test = hypothesis_seed(seed)(test)
            test()
        except (AssertionError, HypothesisException) as exc:
            if machine.last_failure is None:
                crashed = f"{type(exc).__name__}: {exc}"[:2000]
        except Exception as exc:  # a crash of impl/ or the harness is a finding too
            crashed = _describe_crash(exc)
    seconds = time.perf_counter() - started
    report = machine.last_failure
    shrunk = None
    if report is not None and replay_file is not None and replay_file.exists():
        shrunk = len(json.loads(replay_file.read_text())["decisions"])
    return CampaignResult(
        canaries=canaries,
        examples=counter.examples,
        seconds=seconds,
        anomaly_kinds=tuple(sorted(report.by_kind(), key=lambda k: k.value)) if report else (),
        first_failure_example=counter.first_failure_example,
        first_failure_seconds=(
            counter.first_failure_at - started if counter.first_failure_at is not None else None
        ),
        shrunk_steps=shrunk,
        replay_file=replay_file if report is not None else None,
        crashed=crashed,
        labels=dict(machine.labels_seen),
    )


class _Counter:
    """Counts examples and notes when the first one failed (via the machine's hooks)."""

    def __init__(self, machine: type[StreamMachine]) -> None:
        self.examples = 0
        self.first_failure_example: int | None = None
        self.first_failure_at: float | None = None
        counter = self
        original_init = machine.__init__
        original_judge = machine._judge

        def counting_init(self: StreamMachine) -> None:
            counter.examples += 1
            original_init(self)

        def noting_judge(self: StreamMachine, report: object) -> None:
            if counter.first_failure_example is None and not getattr(report, "ok", True):
                counter.first_failure_example = counter.examples
                counter.first_failure_at = time.perf_counter()
            original_judge(self, report)  # type: ignore[arg-type]

        machine.__init__ = counting_init  # type: ignore[method-assign]
        machine._judge = noting_judge  # type: ignore[method-assign]


def _describe_crash(exc: BaseException) -> str:
    """The innermost causes of a crash, one line each (ExceptionGroups flattened)."""
    lines: list[str] = []

    def walk(error: BaseException, depth: int) -> None:
        if depth > 8 or len(lines) > 20:
            return
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner, depth + 1)
            return
        tb = error.__traceback__
        where = ""
        while tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            tb = tb.tb_next
        lines.append(f"{type(error).__name__}: {error} (at {where})")
        if error.__cause__ is not None:
            walk(error.__cause__, depth + 1)

    walk(exc, 0)
    return "\n".join(lines)[:4000]
