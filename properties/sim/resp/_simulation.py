"""The synchronous face of a foreign world, for the state machine.

Hypothesis runs rules synchronously; the world (the RESP front, the agents' pipes) lives
in the foreign host's trio loop (:mod:`._host`), on the real clock. Each decision is one
``trio.from_thread.run`` call that returns when the world is quiet again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import trio

from streamcheck.model import CheckReport, History
from streamcheck.properties._simulation import Decision
from streamcheck.properties.sim._engine import sim_time
from streamcheck.properties.sim.resp._host import host
from streamcheck.properties.sim.resp._world import (
    STOP_GRACE_S,
    ForeignWorld,
    WorldFailed,
    WorldTimings,
)

__all__ = ["ForeignSimulation", "Judged"]

#: Real seconds a heal phase may take while readers still wait for their terminal.
HEAL_S = 4.0


@dataclass(frozen=True, slots=True)
class Judged:
    report: CheckReport
    history: History
    trace: list[str]
    timings: WorldTimings


class ForeignSimulation:
    """One example: agents started by :meth:`start`, decisions applied one at a time,
    then :meth:`heal` (the liveness verdict) and :meth:`close`. The world runs in the
    process's foreign host (:mod:`._host`)."""

    def __init__(self, commands: list[list[str]], *, quiet_s: float = 0.02) -> None:
        self.world = ForeignWorld(commands, quiet_s=quiet_s)
        self.decisions: list[Decision] = []
        self.rule_steps = 0
        self._failure: BaseException | None = None
        self._closing: trio.Event | None = None
        self._closed: trio.Event | None = None
        self._stop_failures: list[str] = []

    def start(self) -> None:
        host.run(self._start)

    async def _start(self) -> None:
        self._closing = trio.Event()
        self._closed = trio.Event()
        await host.nursery.start(self._world_task)

    async def _world_task(self, task_status: trio.TaskStatus[None]) -> None:
        started = False
        closed = self._closed
        assert closed is not None
        try:
            with sim_time(time.time):
                async with trio.open_nursery() as nursery:
                    await self.world.start(nursery)
                    task_status.started()
                    started = True
                    assert self._closing is not None
                    await self._closing.wait()
                    with trio.move_on_after(STOP_GRACE_S + 5):
                        self._stop_failures = await self.world.stop()
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            if not started:
                raise _unwrap(exc) from None
            # After the start, a failure belongs to this example, not to the host.
            self._failure = _unwrap(exc)
        finally:
            closed.set()

    def _call(self, fn: Any, *args: Any) -> Any:
        if self._failure is not None:
            raise WorldFailed(f"the world failed: {self._failure!r}")
        return host.run(self.world.attended, fn, *args)

    def apply(self, decision: Decision) -> bool:
        self.decisions.append(decision)
        acted: bool = self._call(self.world.apply, decision.name, decision.args)
        return acted

    def heal(self) -> Judged:
        """Finish every turn, let the timers fire, release everything; judge the whole
        history (safety and liveness)."""
        return self._judged(self._call(self._heal))

    def judge_now(self) -> Judged:
        """The history so far, judged for safety only."""
        return self._judged(self._call(self._judge_now))

    def _judged(self, verdict: tuple[CheckReport, History]) -> Judged:
        report, history = verdict
        return Judged(report, history, list(self.world.sim.trace), self.world.timings)

    async def _judge_now(self) -> tuple[CheckReport, History]:
        return self.world.judge(healed=False)

    async def _heal(self) -> tuple[CheckReport, History]:
        world = self.world
        await world.settle()
        for stream in world.live_turns():
            await world.apply("finish", {"stream": stream})
        await world.settle()
        if world.failed_over and world.harness_clock:
            # A failover may have lost the write that ended a turn: its readers learn
            # that only from the producer timeout, which the clock passes here (as the
            # in-process heal's jumps do). The failover family needs the harness clock.
            await world.apply("wait", {"timer": "producer_timeout"})
            await world.settle()
        # Readers still waiting get their timers (idle probe, reorder timeout) and
        # reconnections (a client's back-off reaches 1 s) until each has its terminal or
        # HEAL_S have passed: a reader still waiting then is a liveness finding.
        deadline = trio.current_time() + HEAL_S
        while world.open_sessions() and trio.current_time() < deadline:
            await world.apply("wait", {"timer": "idle_probe"})
            await world.settle()
        return world.judge(healed=True)

    def close(self) -> list[str]:
        """Stop the agents; the failures of those that did not stop cleanly."""
        host.run(self._close)
        return self._stop_failures

    async def _close(self) -> None:
        if self._closing is not None and self._closed is not None:
            self._closing.set()
            await self._closed.wait()


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
