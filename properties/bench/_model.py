"""What a benchmark reports: measured figures, an optional baseline, a goal, a verdict.

Every number in a :class:`BenchResult` is measured in the run that reports it, except a
baseline whose ``source`` says it is a documented constant. Whether a goal is met is
computed from the figures here (:meth:`BenchResult.met`), never written by hand, so a
missed goal can't be reported as met.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from streamcheck.properties.bench._sizes import Sizes

#: The source of a baseline measured in the same run as the figure it is compared to.
MEASURED_HERE = "measured in this run"


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    name: str
    value: float
    unit: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"figure {self.name!r} is not a finite number: {self.value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """What a headline figure is compared to, and where that number comes from."""

    name: str
    value: float
    unit: str
    source: str = MEASURED_HERE


class Op(enum.Enum):
    AT_MOST = "<="
    AT_LEAST = ">="

    def holds(self, value: float, threshold: float) -> bool:
        return value <= threshold if self is Op.AT_MOST else value >= threshold


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One condition of a goal on one figure (``figure`` names a :class:`Figure`, or is
    :data:`RATIO` for the result's ratio to its baseline)."""

    figure: str
    op: Op
    threshold: float


RATIO = "ratio"


@dataclass(frozen=True, slots=True, kw_only=True)
class Goal:
    text: str
    checks: tuple[Check, ...]


class Status(enum.Enum):
    MEASURED = "measured"
    SKIPPED = "skipped"
    #: The benchmark started and could not finish (an exception, e.g. Redis went away).
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    name: str
    title: str
    status: Status = Status.MEASURED
    figures: tuple[Figure, ...] = ()
    baseline: Baseline | None = None
    #: The headline figure divided by the baseline's value.
    ratio: float | None = None
    goal: Goal | None = None
    #: Why the benchmark was skipped or failed (one line); None when it was measured.
    reason: str | None = None
    notes: tuple[str, ...] = field(default=())
    #: The figure a summary shows for this result (default: what the goal judges).
    headline: str | None = None

    def value_of(self, figure: str) -> float | None:
        if figure == RATIO:
            return self.ratio
        return next((f.value for f in self.figures if f.name == figure), None)

    def met(self) -> bool | None:
        """True if every check holds, False if one fails, None if the goal could not be
        judged (skipped, no goal, or a figure it needs was not measured, e.g. ``--quick``)."""
        if self.status is not Status.MEASURED or self.goal is None:
            return None
        verdict: bool | None = True
        for check in self.goal.checks:
            value = self.value_of(check.figure)
            if value is None:
                verdict = None
            elif not check.op.holds(value, check.threshold):
                return False
        return verdict

    def unmeasured_checks(self) -> list[str]:
        """The figures the goal needs that this run did not measure."""
        if self.goal is None:
            return []
        return [c.figure for c in self.goal.checks if self.value_of(c.figure) is None]


def skipped(name: str, title: str, reason: str, goal: Goal | None = None) -> BenchResult:
    return BenchResult(name=name, title=title, status=Status.SKIPPED, reason=reason, goal=goal)


def describe_error(exc: BaseException) -> str:
    """The innermost error on one line (ExceptionGroups from nurseries flattened)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (``fraction`` in 0..1)."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchContext:
    """What a benchmark is given: its sizes and the Redis to use (None: unreachable)."""

    sizes: Sizes
    quick: bool
    redis_url: str | None
    #: Every Redis key this run writes starts with this (``bench:<hex>:``).
    key_prefix: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Benchmark:
    name: str
    title: str
    goal: Goal
    needs_redis: bool
    #: Runs the benchmark (it starts its own trio loop if it needs one).
    run: Callable[[BenchContext], BenchResult]
