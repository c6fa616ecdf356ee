"""One simulated run: a trio loop on a mock clock in a thread, a simulated Redis, the
world of replicas and clients, and the list of decisions that drove it.

The driver (a Hypothesis state machine, or the replay runner) calls
:meth:`Simulation.apply` with one decision at a time. Each decision runs inside the
loop, which then runs until every task is blocked; so the run is a pure function of
the decision list (and the seed of trio's scheduler, which Hypothesis controls).
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio
import trio.testing

from impl._canaries import Canary
from model import CheckReport, Healed, WritesLost, check
from properties._pct import PctScheduler
from properties._world import EPOCH_S, SIM_SETTINGS, World
from properties.sim import SimRedis, sim_time

#: Clock jumps of the heal phase: past the reorder timeout, the idle probe, the
#: producer timeout and the cleanup interval, with settling in between.
#: ``lossy_emit(k=LOSE_ALL_COPIES)`` loses the message on every connection.
LOSE_ALL_COPIES = 3

#: How long a failover keeps the stream's Redis away. Sentinel and Cluster first wait
#: for the primary to be judged down (seconds), then elect a replica: one second is a
#: low bound, and a promoted server's clock is never the old one's.
FAILOVER_SECONDS = 1.0
#: Most steps one ``pct`` decision runs (a settle's bound).
PCT_STEP_LIMIT = 500
HEAL_JUMPS = (0.6, 2.5, 2.5, 11.0, 31.0, 2.5, 61.0, 2.5, 2.5)


_Work = Callable[[], Awaitable[None] | None]


class _Finished:
    """The answer _call gets when the loop ended instead of running its work."""


_FINISHED = _Finished()
_Answer = Exception | _Finished | None


@dataclass(frozen=True, slots=True)
class Decision:
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.name}({inner})"

    def to_json(self) -> list[Any]:
        return [self.name, self.args]


class SimulationCrashed(RuntimeError):
    """A task in the simulated world raised: a bug in impl/ or in the harness."""


class Simulation:
    def __init__(
        self,
        *,
        replicas: int = 2,
        with_replica: bool = True,
        canaries: frozenset[Canary] = frozenset(),
    ) -> None:
        self.canaries = canaries
        self.decisions: list[Decision] = []
        #: State-machine rules that made at least one decision (a macro rule makes
        #: several): the length of the trace as Hypothesis prints it.
        self.rule_steps = 0
        self.clock = trio.testing.MockClock()
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._crash: BaseException | None = None
        self._replica_count = replicas
        self._with_replica = with_replica
        self.world: World | None = None
        self.sim: SimRedis | None = None
        #: Work for the loop's driver task, and its answers (see _call).
        self._work: trio.MemorySendChannel[_Work] | None = None
        self._answers: queue.SimpleQueue[_Answer] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._crash is not None:
            raise SimulationCrashed("the simulated world failed to start") from self._crash

    # -- the loop thread ----------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock)
        except BaseException as exc:  # surfaced to the driver by _call
            self._crash = exc
        finally:
            self._ready.set()
            # Whoever waits in _call learns that the loop is gone.
            self._answers.put(_FINISHED)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        with sim_time(lambda: EPOCH_S + self.clock.current_time()):
            sim = SimRedis(
                clock=lambda: EPOCH_S + self.clock.current_time(), with_replica=self._with_replica
            )
            self.sim = sim
            work_in, work_out = trio.open_memory_channel[_Work](1)
            self._work = work_in
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drive, work_out)
                self.world = World(
                    sim,
                    nursery,
                    replicas=self._replica_count,
                    settings=replace(SIM_SETTINGS, canaries=self.canaries),
                )
                for index in range(self._replica_count):
                    await self.world.start_replica(index)
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    async def _drive(self, work: trio.MemoryReceiveChannel[_Work]) -> None:
        """Run each piece of work _call hands over, then wait until every task is
        blocked, and answer. One long-lived task instead of trio.from_thread.run's task
        per call: the hop between the threads is a tenth of each decision's cost."""
        async for fn in work:
            try:
                result = fn()
                if result is not None:
                    await result
                await trio.testing.wait_all_tasks_blocked()
                if self.world is not None:
                    self.world.sample_bounds()
            except Exception as exc:
                self._answers.put(exc)
            else:
                self._answers.put(None)

    def _call(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        if self._crash is not None:
            raise SimulationCrashed("the simulated world crashed earlier") from self._crash
        assert self._token is not None and self._work is not None
        try:
            self._token.run_sync_soon(self._work.send_nowait, fn)
        except trio.RunFinishedError:
            answer: _Answer = _FINISHED
        else:
            answer = self._answers.get()
        if answer is _FINISHED:
            # The loop ended because a task raised: surface that error.
            self._thread.join(timeout=5)
            raise SimulationCrashed("the simulated world crashed") from self._crash
        if isinstance(answer, Exception):
            raise answer

    def close(self) -> None:
        if self._token is not None and self._stop is not None and self._crash is None:
            stop, sim = self._stop, self.sim

            def shut_down() -> None:
                # Shielded clean-ups (unsubscribe, status writes) still await simulated
                # commands while the world is cancelled; nobody will step them any more,
                # so let the simulated Redis answer by itself from here on.
                if sim is not None:
                    sim.set_auto(True)
                stop.set()

            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(shut_down, trio_token=self._token)
        self._thread.join(timeout=10)

    # -- decisions ------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        self.decisions.append(decision)
        handler = getattr(self, f"_do_{decision.name}", None)
        if handler is None:
            raise ValueError(f"unknown decision {decision.name!r}")
        self._call(lambda: handler(**decision.args))

    def _w(self) -> World:
        assert self.world is not None
        return self.world

    def _s(self) -> SimRedis:
        assert self.sim is not None
        return self.sim

    def _do_create(self, stream: str, replica: int) -> None:
        self._w().create(stream, replica)

    def _do_emit(self, stream: str) -> None:
        self._w().emit(stream)

    def _do_generate(self, stream: str, n: int) -> None:
        self._w().emit(stream, count=n)

    def _do_finish(self, stream: str, error: bool) -> None:
        self._w().finish(stream, error=error)

    def _do_abort(self, stream: str, replica: int) -> None:
        self._w().abort(stream, replica)

    def _do_subscribe(self, stream: str, replica: int) -> None:
        self._w().attach(stream, replica, resume=False)

    def _do_resume(self, stream: str, replica: int) -> None:
        self._w().attach(stream, replica, resume=True)

    def _do_intrude(self, stream: str, replica: int) -> None:
        self._w().attach(stream, replica, resume=False, intruder=True)

    def _do_detach(self, which: int) -> None:
        self._w().detach(which)

    def _do_reconnect(self, which: int, replica: int, mode: str) -> None:
        self._w().reconnect(which, replica, resume=mode == "resume")

    def _do_step(self, k: int) -> None:
        items = self._s().runnable()
        if items:
            self._s().step(items[k % len(items)].id)

    async def _do_pump(self) -> None:
        """Run every pending command (not deliveries) until only deliveries remain."""
        sim = self._s()
        for _ in range(200):
            commands = [i for i in sim.runnable() if i.kind != "delivery"]
            if not commands:
                return
            sim.step(commands[0].id)
            await trio.testing.wait_all_tasks_blocked()

    def in_flight_messages(self) -> list[int]:
        """Ids of the pub/sub messages queued for delivery now (acks excepted)."""
        return [
            item.id
            for item in self._s().pending()
            if item.kind == "delivery" and item.description.startswith("message ")
        ]

    def _do_deliver_item(self, item: int) -> None:
        """Deliver that message if it is next on its connection (else nothing)."""
        sim = self._s()
        if any(pending.id == item for pending in sim.runnable()):
            sim.step(item)

    def _do_drop_item(self, item: int) -> None:
        """Lose that message if it is still queued (else nothing)."""
        if item in self.in_flight_messages():
            self._s().drop(item)

    def _do_deliver(self, k: int) -> None:
        items = [i for i in self._s().runnable() if i.kind == "delivery"]
        if items:
            self._s().step(items[k % len(items)].id)

    async def _do_burst(self, stream: str, n: int) -> None:
        """A macro step: the generator emits ``n`` chunks back to back (commands run,
        deliveries stay pending), as an LLM does between two client events."""
        for _ in range(n):
            self._w().emit(stream)
            await trio.testing.wait_all_tasks_blocked()
            await self._do_pump()

    async def _do_lossy_emit(self, stream: str, k: int) -> None:
        """Emit a chunk, run its commands, lose one copy of its message, deliver the rest.

        A macro step: reaching "one subscriber missed one message" one decision at a
        time is rare enough that canaries hid behind it.
        """
        self._w().emit(stream)
        await trio.testing.wait_all_tasks_blocked()
        await self._do_pump()
        messages = [
            i
            for i in self._s().runnable()
            if i.kind == "delivery" and i.description.startswith("message")
        ]
        # k picks one copy to lose; the top value loses every copy (a lost publish).
        if messages:
            chosen = messages if k >= LOSE_ALL_COPIES else [messages[k % len(messages)]]
            for item in chosen:
                self._s().drop(item.id)
        await trio.testing.wait_all_tasks_blocked()
        await self._do_pump()
        for item in [i for i in self._s().runnable() if i.kind == "delivery"]:
            self._s().step(item.id)
            await trio.testing.wait_all_tasks_blocked()

    def _do_drop(self, k: int) -> None:
        items = [
            i
            for i in self._s().runnable()
            if i.kind == "delivery" and not i.description.startswith("ack")
        ]
        if items:
            self._s().drop(items[k % len(items)].id)

    def _do_disconnect(self, k: int) -> None:
        connections = self._s().connections()
        if connections:
            self._s().disconnect(connections[k % len(connections)])

    def _do_relay_pubsub(self) -> None:
        self._s().relay_pubsub()

    def _do_failover(self) -> None:
        self._failover()

    def _failover(self) -> None:
        sim = self._s()
        lost_before = sim.statistics().writes_lost
        sim.failover()
        lost = sim.statistics().writes_lost - lost_before
        if lost:
            self._w().history.append(WritesLost(time=self.clock.current_time(), writes=lost))
        self.clock.jump(FAILOVER_SECONDS)

    async def _do_failover_after_emit(self, stream: str) -> None:
        """A macro step: a chunk is published but not yet replicated when the primary
        dies, so the promoted replica has lost it (counter, log entry and all)."""
        self._w().emit(stream)
        await trio.testing.wait_all_tasks_blocked()
        sim = self._s()
        for _ in range(50):
            commands = [i for i in sim.runnable() if i.kind == "command"]
            if not commands:
                break
            sim.step(commands[0].id)
            await trio.testing.wait_all_tasks_blocked()
        self._failover()

    async def _do_jump(self, dt: float) -> None:
        self.clock.jump(dt)

    def _do_crash(self, replica: int) -> None:
        self._w().crash_replica(replica % self._replica_count)

    async def _do_restart(self, replica: int) -> None:
        await self._w().start_replica(replica % self._replica_count)

    async def _do_settle(self) -> None:
        await _settle(self._s())

    async def _do_pct(self, seed: int, depth: int) -> None:
        """Run every pending step in the order a PCT scheduler picks (see _pct)."""
        sim, scheduler = self._s(), PctScheduler(seed, depth)
        for _ in range(PCT_STEP_LIMIT):
            pending = sim.runnable()
            if not pending:
                return
            sim.step(scheduler.choose(pending).id)
            await trio.testing.wait_all_tasks_blocked()

    # -- judging ----------------------------------------------------------------------

    def history_length(self) -> int:
        return len(self._w().history)

    def safety_report(self) -> CheckReport:
        return check(self._w().history)

    def heal(self) -> CheckReport:
        """Stop faults, let everything finish, pass every timeout, then judge liveness."""
        world, sim = self._w(), self._s()

        async def step(action: Callable[[], Awaitable[None] | None]) -> None:
            # What one _call does, without a thread hop per step (the heal is about
            # forty steps: as many hops as the rest of an example).
            result = action()
            if result is not None:
                await result
            await trio.testing.wait_all_tasks_blocked()
            world.sample_bounds()

        async def heal_in_one_hop() -> None:
            await step(lambda: _settle(sim))
            for dt in HEAL_JUMPS:
                await step(world.finish_all)
                await step(lambda: _settle(sim))
                await step(functools.partial(self._do_jump, dt))
                await step(lambda: _settle(sim))

        self._call(heal_in_one_hop)
        world.history.append(Healed(time=self.clock.current_time()))
        return check(world.history)


async def _settle(sim: SimRedis, rounds: int = 50) -> None:
    """Run every pending Redis step until nothing is runnable and every task waits."""
    for _ in range(rounds):
        if not sim.runnable():
            return
        sim.run_until_quiet()
        await trio.testing.wait_all_tasks_blocked()
