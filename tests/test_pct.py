"""The PCT scheduler: priorities per lane, FIFO inside a lane, d - 1 priority drops,
and the same choices for the same seed."""

from __future__ import annotations

import pytest

from streamcheck.properties._pct import PctScheduler, lane_of
from streamcheck.properties.sim import PendingItem


def _drain(scheduler: PctScheduler, lanes: dict[str, int]) -> list[str]:
    """Run lanes of FIFO items (lane name -> item count) to the end; the lane order."""
    next_id = 0
    queues: dict[str, list[PendingItem]] = {}
    for lane, count in lanes.items():
        queues[lane] = []
        for _ in range(count):
            queues[lane].append(PendingItem(next_id, "command", lane, f"{lane}#{next_id}"))
            next_id += 1
    order: list[str] = []
    while any(queues.values()):
        heads = sorted((q[0] for q in queues.values() if q), key=lambda i: i.id)
        chosen = scheduler.choose(heads)
        queues[chosen.connection].pop(0)
        order.append(chosen.connection)
    return order


def test_depth_one_runs_one_lane_to_its_end_before_the_next() -> None:
    for seed in range(20):
        order = _drain(PctScheduler(seed, 1), {"a": 3, "b": 3, "c": 3})
        runs = [lane for i, lane in enumerate(order) if i == 0 or order[i - 1] != lane]
        assert sorted(runs) == ["a", "b", "c"], order


def test_a_priority_drop_switches_lanes_mid_way_for_some_seed() -> None:
    switched = 0
    for seed in range(200):
        order = _drain(PctScheduler(seed, 2, horizon=6), {"a": 3, "b": 3})
        runs = [lane for i, lane in enumerate(order) if i == 0 or order[i - 1] != lane]
        assert len(runs) <= 3, order  # one drop: at most one extra switch
        switched += len(runs) == 3
    assert switched > 0


def test_the_same_seed_makes_the_same_choices() -> None:
    lanes = {"a": 4, "b": 2, "c": 5}
    assert _drain(PctScheduler(7, 3), lanes) == _drain(PctScheduler(7, 3), lanes)
    orders = {tuple(_drain(PctScheduler(seed, 3), lanes)) for seed in range(30)}
    assert len(orders) > 1


def test_lanes_separate_commands_from_deliveries_of_one_connection() -> None:
    command = PendingItem(0, "command", "r0/sub", "SUBSCRIBE")
    delivery = PendingItem(1, "delivery", "r0/sub", "message")
    assert lane_of(command) != lane_of(delivery)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        PctScheduler(0, 0)
    with pytest.raises(ValueError, match="nothing"):
        PctScheduler(0, 1).choose([])
