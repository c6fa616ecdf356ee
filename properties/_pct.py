"""PCT scheduling (Burckhardt et al., ASPLOS 2010) over the simulated Redis's lanes.

The problem: a uniformly random choice among pending steps reaches an ordering bug of
depth d only with a probability that shrinks fast with the number of steps. PCT gives
every lane (a connection's commands, a connection's deliveries, replication) a random
priority, always runs the highest-priority lane's head, and at d - 1 chosen step
indices drops the lane about to run below every other. A bug that needs d ordering
constraints is then found with probability at least 1 / (lanes * steps^(d - 1)) per
run (docs/simulation.md).

The scheduler is pure: the same seed, depth and sequence of pending items give the
same choices, so a decision ``pct(seed, depth)`` replays exactly and Hypothesis can
shrink it (seed towards 0, depth towards 1).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from streamcheck.properties.sim import PendingItem

#: The step indices at which priorities may change are drawn from this many steps: a
#: settle after a few rules rarely runs more.
HORIZON = 40


def lane_of(item: PendingItem) -> str:
    """Items of one lane run in FIFO order; only a lane's head is ever pending."""
    return f"{item.kind}:{item.connection}"


class PctScheduler:
    def __init__(self, seed: int, depth: int, *, horizon: int = HORIZON) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self._rng = random.Random(seed)
        self._priority: dict[str, float] = {}
        points = min(depth - 1, horizon)
        self._change_points = frozenset(self._rng.sample(range(horizon), points))
        self._steps = 0

    def choose(self, pending: Sequence[PendingItem]) -> PendingItem:
        """The item to run next among ``pending`` (not empty)."""
        if not pending:
            raise ValueError("nothing to choose from")
        for item in pending:
            lane = lane_of(item)
            if lane not in self._priority:
                self._priority[lane] = self._rng.random()
        chosen = max(pending, key=self._rank)
        if self._steps in self._change_points:
            self._priority[lane_of(chosen)] = min(self._priority.values()) - 1.0
            chosen = max(pending, key=self._rank)
        self._steps += 1
        return chosen

    def _rank(self, item: PendingItem) -> tuple[float, int]:
        # Ties (never between lanes, whose priorities are distinct draws) go to the
        # older item.
        return (self._priority[lane_of(item)], -item.id)
