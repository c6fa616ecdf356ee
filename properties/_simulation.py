"""One simulated run: a trio loop on a mock clock (driven step by step, see
:mod:`streamcheck.properties._stepped_loop`), a simulated Redis, the world of replicas and clients,
and the list of decisions that drove it.

The driver (a Hypothesis state machine, or the replay runner) calls
:meth:`Simulation.apply` with one decision at a time. Each decision runs inside the
loop, which then runs until every task is blocked; so the run is a pure function of
the decision list (trio's scheduler is reseeded before each decision).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
import trio.testing
from trio._core import _run

from streamcheck.model import (
    CheckReport,
    FaultKind,
    FaultsRecorded,
    Healed,
    WritesLost,
    check,
)
from streamcheck.properties._hostile import Forgery, fail_actor, forge, judged
from streamcheck.properties._memory_sim import (
    EarlyExpiryWatch,
    SharedMemory,
    audit_memory_store,
    job_states,
)
from streamcheck.properties._pct import PctScheduler
from streamcheck.properties._run_limits import SimBackend
from streamcheck.properties._stepped_loop import LoopFinished, SteppedLoop
from streamcheck.properties._store_audit import (
    JobStoreWatcher,
    audit_keyspace,
    users_in_store,
)
from streamcheck.properties._world import EPOCH_S, SIM_SETTINGS, SimWallClock, World, owner_of
from streamcheck.properties.canaries import Canary, replica_build
from streamcheck.properties.sim import PendingItem, SimRedis, sim_time

#: Clock jumps of the heal phase: past the reorder timeout, the idle probe, the
#: producer timeout and the cleanup interval, with settling in between.
#: ``lossy_emit(k=LOSE_ALL_COPIES)`` loses the message on every connection.
LOSE_ALL_COPIES = 3
#: Steps an attachment may take before ``detach_catching_up`` gives up waiting for its
#: catch-up (a SUBSCRIBE, its acknowledgement, a snapshot's reads: a handful).
ATTACH_STEP_LIMIT = 30

#: How long a failover keeps the stream's Redis away. Sentinel and Cluster first wait
#: for the primary to be judged down (seconds), then elect a replica: one second is a
#: low bound, and a promoted server's clock is never the old one's.
FAILOVER_SECONDS = 1.0
#: Most steps one ``pct`` decision runs (a settle's bound).
PCT_STEP_LIMIT = 500
#: The heal's clock jumps: past every reorder, probe and producer timeout (116 s), then
#: 100 s (short of the stale-job timeout, so a live producer's heartbeat keeps its job):
#: 216 s in all, past the stale-job timeout (180 s), so the job of every producer that
#: is gone is reaped, and short of a finished job's TTL (300 s), whose expiry would end
#: a hanging reader with a made-up end and hide it (the stale-frontier canary's reader
#: did, with a second 100 s jump).
HEAL_JUMPS = (0.6, 2.5, 2.5, 11.0, 31.0, 2.5, 61.0, 2.5, 2.5, 100.0, 2.5)


#: Decisions that act on Redis itself (its messages, connections, failover): the
#: memory backend has none of these (docs/simulation.md).
REDIS_ONLY_DECISIONS = frozenset(
    {
        "drop",
        "drop_item",
        "lossy_emit",
        "disconnect",
        "relay_pubsub",
        "failover",
        "failover_after_emit",
        "crash",
        "crash_then_resume",
        "restart",
        "forge",
        "lost_reply_emit",
    }
)


class Stepped(Protocol):
    """What the replicas share, as the driver steps it: the simulated Redis, or the
    memory backend, which never has a step pending (properties/_memory_sim.py)."""

    def runnable(self) -> list[PendingItem]: ...

    def pending(self) -> list[PendingItem]: ...

    def step(self, item_id: int) -> None: ...

    def run_until_quiet(self) -> int: ...

    def set_auto(self, auto: bool) -> None: ...


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


def describe_crash(exc: BaseException) -> str:
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


class Simulation:
    def __init__(
        self,
        *,
        replicas: int = 2,
        with_replica: bool = True,
        canaries: frozenset[Canary] = frozenset(),
        backend: SimBackend = SimBackend.REDIS,
    ) -> None:
        self.canaries = canaries
        self.backend = backend
        self.decisions: list[Decision] = []
        #: State-machine rules that made at least one decision (a macro rule makes
        #: several): the length of the trace as Hypothesis prints it.
        self.rule_steps = 0
        self.clock = trio.testing.MockClock()
        self._replica_count = replicas
        self._with_replica = with_replica
        #: Seeds trio's scheduler before every decision (``shuffle_tasks`` sets it).
        self.scheduler_seed = 0
        self.world: World | None = None
        self.sim: SimRedis | None = None
        #: The memory backend the replicas share instead (``backend`` MEMORY).
        self.memory: SharedMemory | None = None
        #: Records the shared job store's states between decisions (model: JobObserved).
        self._jobs = JobStoreWatcher()
        self._early_expiry = EarlyExpiryWatch(SIM_SETTINGS.completed_ttl_s * 1000)
        # fakeredis's clock is patched process-wide, for as long as this run lives.
        self._sim_time = contextlib.ExitStack()
        self._sim_time.enter_context(sim_time(self._now))
        self._loop = SteppedLoop(
            self._build_world,
            clock=self.clock,
            after_each=self._sample_bounds,
            on_close=self._before_stop,
        )
        if self._loop.finished:
            self._sim_time.close()
            raise SimulationCrashed("the simulated world failed to start") from self._loop.crash

    # -- the loop -------------------------------------------------------------------

    def _now(self) -> float:
        return EPOCH_S + self.clock.current_time()

    async def _build_world(self, nursery: trio.Nursery) -> None:
        source: SimRedis | SharedMemory
        if self.backend is SimBackend.MEMORY:
            source = self.memory = SharedMemory(wall_clock=SimWallClock(), settings=SIM_SETTINGS)
        else:
            source = self.sim = SimRedis(clock=self._now, with_replica=self._with_replica)
        self.world = World(
            source,
            nursery,
            replicas=self._replica_count,
            settings=SIM_SETTINGS,
            build=replica_build(self.canaries),
        )
        world = self.world
        if self.sim is not None:
            # Each trace record says how many history records came before it, so a
            # report places Redis's steps among the history exactly.
            self.sim.set_position_source(lambda: len(world.history))
        # This world says what it does to the system, so gaps and slow paths are
        # judged against it (model: FaultsRecorded).
        self.world.history.append(
            FaultsRecorded(
                time=trio.current_time(),
                log_ttl_s=float(min(SIM_SETTINGS.running_ttl_s, SIM_SETTINGS.completed_ttl_s)),
            )
        )
        for index in range(self._replica_count):
            await self.world.start_replica(index)

    def _sample_bounds(self) -> None:
        if self.world is not None:
            self.world.sample_bounds()
            self.world.sample_slow_path()
            now = self.clock.current_time()
            if self.sim is not None:
                self._jobs.sample(self.sim, self.world.history, now)
            elif self.memory is not None:
                streams, history = self.world.streams(), self.world.history
                self._jobs.observe(job_states(self.memory, streams), history, now)
                self._early_expiry.sample(
                    self.memory, streams, history, now, wall_now_ms=int(self._now() * 1000)
                )

    def _before_stop(self) -> None:
        # Shielded clean-ups (unsubscribe, status writes) still await simulated
        # commands while the world is cancelled; nobody will step them any more, so
        # let the simulated Redis answer by itself from here on.
        if self.sim is not None or self.memory is not None:
            self._steps().set_auto(True)

    def _call(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        def reseeded() -> Awaitable[None] | None:
            # trio shuffles each batch of runnable tasks with one Random: reseeded per
            # decision, a decision's interleaving depends on the world's state and the
            # decision only, not on how many batches earlier decisions happened to run.
            # Deleting a decision that changed nothing then changes nothing later, which
            # is what shrinking and minimizing rely on. The seed itself is the test's
            # choice (``shuffle_tasks``): the order of tasks woken together is one more
            # source of nondeterminism the test draws, not one fixed order for ever.
            _run._r.seed(self.scheduler_seed)
            return fn()

        try:
            self._loop.run(reseeded)
        except LoopFinished as exc:
            # The loop ended because a task raised: surface that error.
            raise SimulationCrashed("the simulated world crashed") from exc.__cause__

    def close(self) -> None:
        try:
            self._loop.close()
        except LoopFinished as exc:
            raise SimulationCrashed("the simulated world failed to shut down") from exc.__cause__
        finally:
            self._sim_time.close()

    # -- decisions ------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        self.decisions.append(decision)
        handler = getattr(self, f"_do_{decision.name}", None)
        if handler is None:
            raise ValueError(f"unknown decision {decision.name!r}")
        if self.backend is SimBackend.MEMORY and decision.name in REDIS_ONLY_DECISIONS:
            raise ValueError(f"decision {decision.name!r} needs the simulated Redis")
        self._call(lambda: handler(**decision.args))

    def _w(self) -> World:
        assert self.world is not None
        return self.world

    def _s(self) -> SimRedis:
        assert self.sim is not None, "this decision needs the simulated Redis"
        return self.sim

    def _steps(self) -> Stepped:
        """What the replicas share, as the driver steps it (either backend)."""
        stepped: Stepped | None = self.sim if self.sim is not None else self.memory
        assert stepped is not None
        return stepped

    def _do_shuffle_tasks(self, seed: int) -> None:
        """From the next decision on, trio orders each batch of runnable tasks by
        ``seed`` (two tasks woken by one step run in another order)."""
        self.scheduler_seed = seed

    def _do_create(self, stream: str, replica: int) -> None:
        self._w().create(stream, replica)

    def _do_emit(self, stream: str) -> None:
        self._w().emit(stream)

    def _do_generate(self, stream: str, n: int) -> None:
        self._w().emit(stream, count=n)

    def _do_submit(self, stream: str, n: int) -> None:
        self._w().submit(stream, n)

    def _do_emit_after_end(self, stream: str) -> None:
        self._w().emit_after_end(stream)

    def _do_list_jobs(self, stream: str, replica: int) -> None:
        self._w().list_jobs(stream, replica)

    def _do_finish_then_emit(self, stream: str) -> None:
        self._w().finish_then_emit(stream)

    def _do_emit_from_replaced_turn(self, stream: str) -> None:
        self._w().emit_from_replaced_turn(stream)

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

    # -- adversarial clients and generators -------------------------------------------

    def _do_resume_at_cursor(self, stream: str, replica: int, which: int, stale: bool) -> None:
        self._w().resume_at_cursor(stream, replica, which, stale=stale)

    async def _do_detach_catching_up(self, stream: str, replica: int, mode: str) -> None:
        """A client attaches and leaves again while its replica still reads the log for
        it: the attachment's own steps run until the session is open with its catch-up
        read waiting, then the client detaches (nothing if the moment never comes)."""
        world, sim = self._w(), self._steps()
        before = {s.name for s in world.sessions}
        world.attach(stream, replica, resume=mode == "resume")
        await trio.testing.wait_all_tasks_blocked()
        client = f"r{replica % self._replica_count}."
        for _ in range(ATTACH_STEP_LIMIT):
            ready = [s for s in world.catching_up() if s.name not in before]
            if ready:
                world.detached_catching_up += 1
                world.detach_session(ready[0])
                return
            steps = [
                item
                for item in sim.runnable()
                if item.connection.startswith(client)
                and (item.kind == "command" or item.description.startswith("ack"))
            ]
            if not steps:
                return
            sim.step(steps[0].id)
            await trio.testing.wait_all_tasks_blocked()

    async def _do_lost_reply_emit(self, stream: str) -> None:
        """The generator emits a chunk; Redis runs the publish and the connection drops
        before the reply (a fault), so the generator does not know whether it was
        published, and emits it again."""
        world, sim = self._w(), self._s()
        gen = world.generators.get(stream)
        world.emit_retrying(stream)
        await trio.testing.wait_all_tasks_blocked()
        if gen is None:
            return
        client = f"{gen.replica}.{world.replica_incarnation(gen.replica)}/"
        publishes = [
            item
            for item in sim.runnable()
            if item.kind == "command"
            and item.connection.startswith(client)
            and " publish " in f" {item.description} "
            and f"{{{stream}}}" in item.description
        ]
        if publishes:
            world.record_fault(FaultKind.DISCONNECT, f"reply lost: {publishes[0].description}")
            sim.step(publishes[0].id, lose_reply=True)
            await trio.testing.wait_all_tasks_blocked()

    def _do_reconnect(self, which: int, replica: int, mode: str) -> None:
        self._w().reconnect(which, replica, resume=mode == "resume")

    def _do_step(self, k: int) -> None:
        items = self._steps().runnable()
        if items:
            self._steps().step(items[k % len(items)].id)

    async def _do_pump(self) -> None:
        """Run every pending command (not deliveries) until only deliveries remain."""
        sim = self._steps()
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
            for item in self._steps().pending()
            if item.kind == "delivery" and item.description.startswith("message ")
        ]

    def _do_deliver_item(self, item: int) -> None:
        """Deliver that message if it is next on its connection (else nothing)."""
        sim = self._steps()
        if any(pending.id == item for pending in sim.runnable()):
            sim.step(item)

    def _do_drop_item(self, item: int) -> None:
        """Lose that message if it is still queued (else nothing)."""
        if item in self.in_flight_messages():
            self._w().record_fault(FaultKind.DROP, f"message {item}")
            self._s().drop(item)

    def _do_deliver(self, k: int) -> None:
        items = [i for i in self._steps().runnable() if i.kind == "delivery"]
        if items:
            self._steps().step(items[k % len(items)].id)

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
                self._w().record_fault(FaultKind.DROP, item.description)
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
            chosen = items[k % len(items)]
            self._w().record_fault(FaultKind.DROP, chosen.description)
            self._s().drop(chosen.id)

    def _do_disconnect(self, k: int) -> None:
        connections = self._s().connections()
        if connections:
            chosen = connections[k % len(connections)]
            self._w().record_fault(FaultKind.DISCONNECT, chosen)
            self._s().disconnect(chosen)

    def _do_relay_pubsub(self) -> None:
        self._s().relay_pubsub()

    def _do_failover(self) -> None:
        self._failover()

    def _failover(self) -> None:
        sim = self._s()
        lost_before = sim.statistics().writes_lost
        self._w().record_fault(FaultKind.FAILOVER)
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
        if any(item.kind != "replication" for item in self._steps().pending()):
            # Whatever is on its way to a client arrives late: a reorder timeout may fire.
            self._w().record_fault(FaultKind.DELAY, f"{dt}s")
        self.clock.jump(dt)

    def _do_crash(self, replica: int) -> None:
        self._w().crash_replica(replica % self._replica_count)

    async def _do_restart(self, replica: int) -> None:
        await self._w().start_replica(replica % self._replica_count)

    async def _do_settle(self) -> None:
        await _settle(self._steps())

    async def _do_pct(self, seed: int, depth: int) -> None:
        """Run every pending step in the order a PCT scheduler picks (see _pct)."""
        sim, scheduler = self._steps(), PctScheduler(seed, depth)
        for _ in range(PCT_STEP_LIMIT):
            pending = sim.runnable()
            if not pending:
                return
            sim.step(scheduler.choose(pending).id)
            await trio.testing.wait_all_tasks_blocked()

    # -- hostile decisions (properties/_hostile.py) -------------------------------------

    def _do_forge(self, stream: str, form: str, which: int) -> None:
        """A foreign client publishes on the stream's channel (see ``Forgery``)."""
        self._w().record_fault(FaultKind.FORGERY, f"{form} #{which} on {stream}")
        forge(self._w(), stream, Forgery(form), which)

    def _do_abort_reaction(self, how: str) -> None:
        """From now on a generator stopped by an abort ends its turn with ``how``."""
        self._w().hostile.abort_reaction = how

    def _do_actor_fault(self, replica: int, stream: str) -> None:
        """An unexpected error inside the stream's actor on ``replica``."""
        self._w().record_fault(FaultKind.ACTOR_FAULT, f"{stream} on r{replica}")
        fail_actor(self._w(), replica, stream)

    # -- judging ----------------------------------------------------------------------

    def history_length(self) -> int:
        return len(self._w().history)

    def safety_report(self) -> CheckReport:
        return judged(check(self._w().history), self._w())

    def heal(self) -> CheckReport:
        """Stop faults, let everything finish, pass every timeout, then judge liveness."""
        world, sim = self._w(), self._steps()

        async def step(action: Callable[[], Awaitable[None] | None]) -> None:
            # What one _call does, in one piece of work: the heal is about forty
            # steps, none of which the driver needs to see.
            result = action()
            if result is not None:
                await result
            await trio.testing.wait_all_tasks_blocked()
            self._sample_bounds()

        async def heal_all_at_once() -> None:
            await step(lambda: _settle(sim))
            for dt in HEAL_JUMPS:
                await step(world.finish_all)
                await step(lambda: _settle(sim))
                await step(functools.partial(self._do_jump, dt))
                await step(lambda: _settle(sim))

        async def list_every_users_jobs() -> None:
            # The index audit through the API: each user's listing, once all is quiet,
            # must be exactly that user's running jobs (the listing heals the index).
            world.listings.clear()
            users = users_in_store(self.sim) if self.sim is not None else self._memory_users()
            for user in users:
                for index in range(self._replica_count):
                    if world.replicas[index].alive:
                        world.list_jobs_of(user, index)
                        break
            await step(lambda: _settle(sim))

        self._call(heal_all_at_once)
        self._call(list_every_users_jobs)
        self._call(world.audit_attached_readers)
        now = self.clock.current_time()
        if self.sim is not None:
            audit_keyspace(
                self.sim,
                world.history,
                now,
                listings=world.listings,
                reaped=any(replica.alive for replica in world.replicas),
            )
        elif self.memory is not None:
            audit_memory_store(
                self.memory,
                world.streams(),
                world.history,
                now,
                world.listings,
                wall_now_ms=int(self._now() * 1000),
                expired_after_ms=int(
                    (SIM_SETTINGS.completed_ttl_s + SIM_SETTINGS.cleanup_interval_s) * 1000
                ),
            )
        world.history.append(Healed(time=self.clock.current_time()))
        return judged(check(world.history), world)

    def _memory_users(self) -> list[str]:
        """The owners of every stream a turn ran on (the memory store's users)."""
        return sorted({owner_of(stream) for stream in self._w().streams()})


async def _settle(sim: Stepped, rounds: int = 50) -> None:
    """Run every pending Redis step until nothing is runnable and every task waits."""
    for _ in range(rounds):
        if not sim.runnable():
            return
        sim.run_until_quiet()
        await trio.testing.wait_all_tasks_blocked()
