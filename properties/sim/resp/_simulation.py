"""The synchronous face of a foreign world: a trio thread the state machine talks to.

Hypothesis runs rules synchronously; the world (the RESP front, the agents' pipes) lives
in a trio loop in a thread of its own, on the real clock. Each decision is one
``trio.from_thread.run`` call that returns when the world is quiet again.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from streamcheck.model import CheckReport, History
from streamcheck.properties._simulation import Decision
from streamcheck.properties.sim._engine import sim_time
from streamcheck.properties.sim.resp._world import ForeignWorld, WorldFailed, WorldTimings

__all__ = ["ForeignSimulation", "Judged"]

#: Heal rounds at most: each lets the replicas' timers fire, then releases everything.
HEAL_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class Judged:
    report: CheckReport
    history: History
    trace: list[str]
    timings: WorldTimings


class ForeignSimulation:
    """One example: agents started by :meth:`start`, decisions applied one at a time,
    then :meth:`heal` (the liveness verdict) and :meth:`close`."""

    def __init__(self, commands: list[list[str]], *, quiet_s: float = 0.02) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="streamcheck-foreign-")
        self.world = ForeignWorld(commands, Path(self._dir.name), quiet_s=quiet_s)
        self.decisions: list[Decision] = []
        self.rule_steps = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._closing: trio.Event | None = None
        self._stop_failures: list[str] = []
        self._thread = threading.Thread(target=self._thread_main, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    def _thread_main(self) -> None:
        try:
            with sim_time(time.time):
                trio.run(self._main)
        except BaseException as exc:  # handed to the caller's thread
            self._failure = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._closing = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                await self.world.start(nursery)
                self._started.set()
                await self._closing.wait()
                with trio.move_on_after(10):
                    self._stop_failures = await self.world.stop()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            failed = group.subgroup(WorldFailed)
            if failed is not None:
                raise failed.exceptions[0] from None
            raise

    def _call(self, fn: Any, *args: Any) -> Any:
        if self._token is None or self._failure is not None:
            raise WorldFailed(f"the world is not running: {self._failure}")
        return trio.from_thread.run(self.world.attended, fn, *args, trio_token=self._token)

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
        for _ in range(HEAL_ROUNDS):
            if world.open_sessions() == 0:
                break
            said = world.lines_said()
            await world.apply("wait", {"timer": "idle_probe"})
            await world.settle()
            if world.lines_said() == said:
                break
        return world.judge(healed=True)

    def close(self) -> list[str]:
        """Stop the agents and the thread; the agents that did not stop cleanly."""
        if self._token is not None and self._closing is not None and self._failure is None:
            try:
                trio.from_thread.run_sync(self._closing.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout=30)
        self._dir.cleanup()
        return self._stop_failures
