"""The world: N replicas from impl/ over one Redis, clients, generators, and the
history they produce.

In the simulation everything runs inside one trio loop on a ``MockClock`` that only
moves when a decision says so, over the simulated Redis. Each decision method starts
operations as tasks and returns; the driver then waits until every task is blocked
(on a simulated Redis step, an event or the clock), so one decision's effects are
complete before the next is drawn. The real-Redis tier runs the same world, one
replica per process, over a real server (:class:`RedisSource` is the seam).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from streamcheck.impl import (
    AbortOutcome,
    CountingIds,
    GenerationJob,
    GenerationJobManager,
    Keys,
    MemoryBackend,
    QueuedChunk,
    ReplicaSettings,
    StopReason,
    StreamAccessDenied,
    StreamActorStopped,
    Subscription,
    WallClock,
    open_replica,
)
from streamcheck.impl.redis import RedisConnectionError, RedisLike
from streamcheck.impl.transport import ACTOR_FAILED, ActorStats, DeliveryTotals, Published
from streamcheck.model import (
    AbortRequested,
    BoundExceeded,
    Chunk,
    Delivered,
    Done,
    EmitKind,
    Emitted,
    Failure,
    FaultInjected,
    FaultKind,
    Gap,
    GapReason,
    GenerationStarted,
    GeneratorStopped,
    History,
    JSONValue,
    OpOutcome,
    SessionClosed,
    SessionEnd,
    SessionMode,
    SessionOpened,
    SlowPath,
    StreamEvent,
    digest,
    event_digest,
)
from streamcheck.properties._hostile import HostileState, with_fault_injection
from streamcheck.properties._memory_sim import SharedMemory
from streamcheck.properties._raced_reads import raced_log_entries
from streamcheck.properties.canaries import CORRECT, ReplicaBuild, ResourceBound
from streamcheck.properties.canaries.unawaited_publishes import Dispatched
from streamcheck.properties.sim import CommandExecuted, SimRedis

logger = logging.getLogger(__name__)

#: Simulated wall clock: this epoch plus trio's (mock) time.
EPOCH_S = 1_700_000_000.0

#: Timings used in simulation: LibreChat's protocol constants, shorter liveness bounds
#: so the heal phase needs fewer clock jumps.
SIM_SETTINGS = ReplicaSettings(
    # Small, so runs exercise the overflow path (and catch an unbounded buffer).
    early_buffer_max_events=8,
    reorder_timeout_s=0.5,
    reorder_capacity=100,
    idle_probe_s=2.0,
    producer_timeout_s=30.0,
    heartbeat_interval_s=10.0,
    # LibreChat's is 60 s: here every heartbeat tick also cleans up, so runs reach
    # cleanup passes (and their races with new turns) without long clock jumps.
    cleanup_interval_s=10.0,
    # LibreChat's is 1200 s, which no run reaches: the reaper would never be judged.
    # Longer than any clock jump a decision makes (151 s) plus a heartbeat, so only a
    # job whose producer is gone goes stale; the heal passes it.
    stale_job_timeout_s=180,
)


class RedisSource(Protocol):
    """Where the world's replicas get their Redis client (:class:`SimRedis` is one)."""

    def client(self, name: str) -> RedisLike:
        """The client of replica incarnation ``name``."""

    def connections(self) -> list[str]:
        """Names of the open connections (a connection's name starts with its client's)."""

    def disconnect(self, connection: str) -> None:
        """Drop one connection, as a process death does."""


class SimWallClock:
    def now_ms(self) -> int:
        return int((EPOCH_S + trio.current_time()) * 1000)


def owner_of(stream_id: str) -> str:
    return f"user-{stream_id}"


@dataclass(slots=True)
class Replica:
    name: str
    manager: GenerationJobManager | None = None
    scope: trio.CancelScope | None = None
    #: Client operations served by this replica run here, so a crash ends them too.
    ops: trio.Nursery | None = None
    incarnation: int = 0

    @property
    def alive(self) -> bool:
        return self.manager is not None


@dataclass(slots=True)
class Generator:
    """The LLM side of one turn: emits one chunk per decision, in order."""

    stream_id: str
    replica: str
    #: None until create_job returned.
    job: GenerationJob | None = None
    emitted: int = 0
    busy: bool = False
    finished: bool = False

    @property
    def live_job(self) -> GenerationJob:
        assert self.job is not None, "the turn has not started yet"
        return self.job


@dataclass(slots=True)
class Session:
    name: str
    stream_id: str
    replica: str
    subscription: Subscription
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    open: bool = True
    #: The chunk seqs delivered so far: the cursors this client holds.
    received: list[int] = field(default_factory=list)
    generation: str = ""


class World:
    def __init__(
        self,
        sim: RedisSource | SharedMemory,
        nursery: trio.Nursery,
        *,
        replicas: int,
        settings: ReplicaSettings = SIM_SETTINGS,
        wall_clock: WallClock | None = None,
        replica_names: list[str] | None = None,
        incarnation: int = 0,
        history: History | None = None,
        session_prefix: str = "",
        on_emit_invoked: Callable[[Emitted], None] | None = None,
        build: ReplicaBuild = CORRECT,
    ) -> None:
        self.sim = sim
        #: The parts every replica is built from, and the resource bounds beside the
        #: early buffer's that the world samples (see ``sample_bounds``).
        self._build = build
        self._wall_clock = wall_clock if wall_clock is not None else SimWallClock()
        #: Session names must be unique across the processes of the real-Redis tier,
        #: whose histories are merged.
        self._session_prefix = session_prefix
        #: Told of each emit before it is sent (as an INDETERMINATE record), so a process
        #: killed mid-emit leaves evidence that the emit may have happened.
        self._on_emit_invoked = on_emit_invoked
        self.history = history if history is not None else History()
        self.settings = settings
        self._nursery = nursery
        names = replica_names if replica_names is not None else [f"r{i}" for i in range(replicas)]
        self.replicas = [Replica(name, incarnation=incarnation) for name in names]
        #: The latest turn per stream (what emit/finish decisions act on) ...
        self.generators: dict[str, Generator] = {}
        #: ... and every turn ever started, so the heal phase can finish older turns
        #: still running on another replica.
        self.all_generators: list[Generator] = []
        self.sessions: list[Session] = []
        self._session_counter = 0
        #: History length at each replica crash (for the "resume after a crash" label).
        self.crash_marks: list[int] = []
        #: Delivery statistics of replicas that crashed (their transports are gone).
        self.crashed_delivery: list[DeliveryTotals] = []
        self._bounds_reported: set[tuple[str, str, str]] = set()
        #: Slow-path counts already recorded, per replica incarnation (see
        #: ``sample_slow_path``).
        self._slow_path_seen: dict[str, tuple[int, int]] = {}
        #: The simulated Redis's trace length at the last ``sample_slow_path``.
        self._trace_sampled = 0
        #: Whether a fault was recorded yet (from then on every slow path has a cause).
        self._faulted = False
        #: Answers of ``list_jobs``: (user, the stream ids listed).
        self.listings: list[tuple[str, tuple[str, ...]]] = []
        #: What the hostile decisions (properties/_hostile.py) set in this world.
        self.hostile = HostileState()
        #: Sessions detached while their catch-up's log read was on its way.
        self.detached_catching_up = 0
        #: Emits made again after their first attempt's outcome was unknown.
        self.retried_emits = 0

    # -- replicas ---------------------------------------------------------------

    async def start_replica(self, index: int) -> None:
        replica = self.replicas[index]
        if replica.alive:
            return
        replica.incarnation += 1
        await self._nursery.start(self._run_replica, replica)

    async def _run_replica(
        self, replica: Replica, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            replica.scope = scope
            name = f"{replica.name}.{replica.incarnation}"
            parts = with_fault_injection(self._build.parts)
            backend: RedisLike | MemoryBackend
            if isinstance(self.sim, SharedMemory):
                backend = self.sim.backend  # one in-process hub and job store for all
            else:
                backend = self.sim.client(name)
            async with (
                open_replica(
                    backend,
                    settings=self.settings,
                    keys=Keys(),
                    wall_clock=self._wall_clock,
                    ids=CountingIds(f"{name}-g"),
                    parts=parts,
                ) as manager,
                trio.open_nursery() as ops,
            ):
                replica.manager = manager
                replica.ops = ops
                task_status.started()
                await trio.sleep_forever()
        replica.manager = None
        replica.scope = None
        replica.ops = None

    def _spawn(
        self, replica_name: str, fn: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        for replica in self.replicas:
            if replica.name == replica_name and replica.ops is not None:
                replica.ops.start_soon(fn, *args)
                return

    def start_task(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run ``fn`` in the world, outside every replica (a foreign client's work)."""
        self._nursery.start_soon(fn, *args)

    def crash_replica(self, index: int) -> None:
        """Cancel every task of the replica and drop its connections (a process death)."""
        replica = self.replicas[index]
        if replica.scope is None:
            return
        if replica.manager is not None:
            self.crashed_delivery.append(replica.manager.transport.statistics().delivery)
        self.record_fault(FaultKind.CRASH, replica.name)
        self.crash_marks.append(len(self.history))
        replica.scope.cancel()
        replica.manager = None
        replica.ops = None
        if not isinstance(self.sim, SharedMemory):
            for connection in self.sim.connections():
                if connection.startswith(f"{replica.name}.{replica.incarnation}"):
                    self.sim.disconnect(connection)
        for gen in self.generators.values():
            if gen.replica == replica.name:
                gen.finished = True  # its generator died with it

    def _manager(self, index: int) -> GenerationJobManager | None:
        return self.replicas[index % len(self.replicas)].manager

    # -- generator side -----------------------------------------------------------

    def create(self, stream_id: str, replica: int) -> None:
        manager = self._manager(replica)
        current = self.generators.get(stream_id)
        if manager is None or (current is not None and current.busy):
            return
        name = self.replicas[replica % len(self.replicas)].name
        placeholder = Generator(stream_id, name, busy=True)
        for older in self.all_generators:
            if older.stream_id == stream_id and older.replica == name:
                # The manager keys turns by stream id: a new turn on the same replica
                # supersedes the old one there (its emits would reach the new turn).
                older.finished = True
        self.generators[stream_id] = placeholder
        self.all_generators.append(placeholder)
        self._spawn(name, self._create, manager, name, stream_id, placeholder)

    async def _create(
        self, manager: GenerationJobManager, name: str, stream_id: str, gen: Generator
    ) -> None:
        try:
            job = await manager.create_job(stream_id, owner_of(stream_id))
        except (RedisConnectionError, StreamActorStopped):
            # The create may or may not have reached Redis (or met the stream's actor
            # failing on this replica); either way this generator will never emit (a job
            # left behind is ended by the producer timeout, or reaped).
            gen.finished = True
            gen.busy = False
            return
        except trio.Cancelled:
            gen.finished = True
            gen.busy = False
            raise
        gen.job = job
        gen.busy = False
        self.history.append(
            GenerationStarted(
                time=trio.current_time(),
                stream_id=stream_id,
                generation=job.generation,
                user_id=owner_of(stream_id),
                replica=name,
                start_seq=job.start_seq,
            )
        )
        self._spawn(gen.replica, self._watch_abort, gen)

    async def _watch_abort(self, gen: Generator) -> None:
        await gen.live_job.aborted.wait()
        self.history.append(
            GeneratorStopped(
                time=trio.current_time(),
                stream_id=gen.stream_id,
                generation=gen.live_job.generation,
                by_abort=gen.live_job.stop_reason is StopReason.ABORTED,
            )
        )
        gen.finished = True
        # Told to stop, a generator ends its turn at once, as real ones do: the abort
        # must already hold the turn, so the fence, not the generator's manners, keeps
        # this done from winning over the abort's terminal.
        manager = self._manager_named(gen.replica)
        if manager is None or not _serves(manager, gen.stream_id, gen.live_job.generation):
            return
        if self.hostile.abort_reaction == "error":
            await self._emit(manager, gen, EmitKind.ERROR, f"stopped {gen.live_job.generation}")
        else:
            stopped: JSONValue = {"final": gen.live_job.generation, "stopped": True}
            await self._emit(manager, gen, EmitKind.DONE, stopped)

    def emit(self, stream_id: str, count: int = 1) -> None:
        """The generator emits ``count`` chunks, each awaited before the next is made
        (an LLM's token loop); the loop stops early if the turn ends."""
        gen = self._ready_generator(stream_id)
        if gen is None:
            return
        manager = self._manager_named(gen.replica)
        if manager is None:
            return
        gen.busy = True
        self._spawn(gen.replica, self._emit_chunks, manager, gen, count)

    async def _emit_chunks(self, manager: GenerationJobManager, gen: Generator, count: int) -> None:
        for made in range(count):
            if made:
                if gen.finished or gen.live_job.aborted.is_set():
                    return
                gen.busy = True
            await self._emit(manager, gen, EmitKind.CHUNK, self._next_chunk(gen))

    def submit(self, stream_id: str, count: int) -> None:
        """The generator queues ``count`` chunks without awaiting them (coalesced emits;
        tokens arriving in a burst): the stream's actor publishes them in batches. Each
        chunk is recorded when the actor answers it, so the history holds one
        generator's emits in the order they were answered, which is seq order."""
        gen = self._ready_generator(stream_id)
        if gen is None:
            return
        manager = self._manager_named(gen.replica)
        if manager is None:
            return
        gen.busy = True
        self._spawn(gen.replica, self._submit_chunks, manager, gen, count)

    async def _submit_chunks(
        self, manager: GenerationJobManager, gen: Generator, count: int
    ) -> None:
        try:
            for _ in range(count):
                if gen.finished or gen.live_job.aborted.is_set():
                    return
                payload = self._next_chunk(gen)
                invoked_index = self._emit_invoked(gen, EmitKind.CHUNK, payload)
                answered = functools.partial(self._chunk_answered, gen, payload, invoked_index)
                await manager.submit_chunk(gen.stream_id, payload, on_answer=answered)
        finally:
            # Queued, not answered: the generator may go on (and end its turn, behind
            # the queued chunks) while the actor publishes them.
            gen.busy = False

    def _chunk_answered(
        self, gen: Generator, payload: JSONValue, invoked_index: int, queued: QueuedChunk
    ) -> None:
        try:
            receipt = queued.result()
        except BaseException:  # failed, refused by a stopped actor, or cancelled
            outcome, seq = OpOutcome.INDETERMINATE, None  # it may have been published
        else:
            outcome = OpOutcome.OK if receipt is not None else OpOutcome.FAIL
            seq = receipt.seq if receipt is not None else None
        self._record_emitted(gen, EmitKind.CHUNK, payload, outcome, seq, invoked_index)

    def _next_chunk(self, gen: Generator) -> JSONValue:
        payload: JSONValue = {
            "event": "on_message_delta",
            "data": {
                "index": 0,
                "delta": {
                    "content": [
                        {"type": "text", "text": f"{gen.live_job.generation}:{gen.emitted} "}
                    ]
                },
            },
        }
        gen.emitted += 1
        return payload

    def finish(self, stream_id: str, *, error: bool) -> None:
        gen = self._ready_generator(stream_id)
        if gen is not None:
            self._finish(gen, error=error)

    def _finish(self, gen: Generator, *, error: bool) -> None:
        manager = self._manager_named(gen.replica)
        if manager is None:
            return
        gen.busy = True
        kind = EmitKind.ERROR if error else EmitKind.DONE
        payload: JSONValue = (
            f"boom in {gen.live_job.generation}" if error else {"final": gen.live_job.generation}
        )
        self._spawn(gen.replica, self._emit, manager, gen, kind, payload)

    async def _emit(
        self,
        manager: GenerationJobManager,
        gen: Generator,
        kind: EmitKind,
        payload: JSONValue,
        *,
        complete: bool = True,
    ) -> OpOutcome:
        stream_id = gen.stream_id
        outcome = OpOutcome.FAIL
        seq: int | None = None
        invoked_index = self._emit_invoked(gen, kind, payload)
        try:
            if kind is EmitKind.CHUNK:
                receipt = await manager.emit_chunk(stream_id, payload)
            elif kind is EmitKind.DONE:
                receipt = await manager.emit_done(stream_id, payload)
            else:
                assert isinstance(payload, str)
                receipt = await manager.emit_error(stream_id, payload)
            if isinstance(receipt, Dispatched):
                outcome = OpOutcome.INDETERMINATE  # started, not awaited: maybe published
            elif isinstance(receipt, Published):
                outcome, seq = OpOutcome.OK, receipt.seq
            if kind is not EmitKind.CHUNK and complete:
                await manager.complete_job(
                    stream_id, error=payload if isinstance(payload, str) else None
                )
                gen.finished = True
        except (RedisConnectionError, StreamActorStopped):
            # (The actor failed with the emit in hand: it may have been published.)
            outcome = OpOutcome.INDETERMINATE
        finally:
            gen.busy = False
        self._record_emitted(gen, kind, payload, outcome, seq, invoked_index)
        return outcome

    def _emit_invoked(self, gen: Generator, kind: EmitKind, payload: JSONValue) -> int:
        """Note that an emit starts; returns the history's length at its start."""
        if self._on_emit_invoked is not None:
            self._on_emit_invoked(
                Emitted(
                    time=trio.current_time(),
                    stream_id=gen.stream_id,
                    generation=gen.live_job.generation,
                    replica=gen.replica,
                    kind=kind,
                    payload_digest=digest(payload),
                    outcome=OpOutcome.INDETERMINATE,
                    seq=None,
                )
            )
        return len(self.history)

    def _record_emitted(
        self,
        gen: Generator,
        kind: EmitKind,
        payload: JSONValue,
        outcome: OpOutcome,
        seq: int | None,
        invoked_index: int,
    ) -> None:
        self.history.append(
            Emitted(
                time=trio.current_time(),
                stream_id=gen.stream_id,
                generation=gen.live_job.generation,
                replica=gen.replica,
                kind=kind,
                payload_digest=digest(payload),
                outcome=outcome,
                seq=seq,
                invoked_index=invoked_index,
            )
        )

    def streams(self) -> set[str]:
        """Every stream id a turn was started on."""
        return {gen.stream_id for gen in self.all_generators}

    def in_progress(self, stream_id: str) -> bool:
        """A turn of the stream has started and its generator can act now."""
        return self._ready_generator(stream_id) is not None

    def _ready_generator(self, stream_id: str) -> Generator | None:
        gen = self.generators.get(stream_id)
        if gen is None or gen.busy or gen.finished or gen.job is None:
            return None
        return gen

    def _manager_named(self, name: str) -> GenerationJobManager | None:
        for replica in self.replicas:
            if replica.name == name:
                return replica.manager
        return None

    # -- client side ------------------------------------------------------------------

    def abort(self, stream_id: str, replica: int) -> None:
        manager = self._manager(replica)
        if manager is None:
            return
        name = self.replicas[replica % len(self.replicas)].name
        self._spawn(name, self._abort, manager, name, stream_id)

    async def _abort(self, manager: GenerationJobManager, name: str, stream_id: str) -> None:
        try:
            result = await manager.abort_job(stream_id, owner_of(stream_id))
        except StreamAccessDenied:
            return
        except (RedisConnectionError, StreamActorStopped):
            self._record_abort(name, stream_id, None, False, OpOutcome.INDETERMINATE)
            return
        generation = result.job.generation_id if result.job is not None else None
        aborted = result.outcome is AbortOutcome.ABORTED
        if aborted and generation is not None:
            # The aborting replica published the generation's terminal: record it as
            # an emit so the checker can match the delivered Done. Without its seq (an
            # abort whose publish was not awaited) it may or may not have been published.
            known = result.terminal_seq is not None
            self.history.append(
                Emitted(
                    time=trio.current_time(),
                    stream_id=stream_id,
                    generation=generation,
                    replica=name,
                    kind=EmitKind.DONE,
                    payload_digest=digest(result.final_event),
                    outcome=OpOutcome.OK if known else OpOutcome.INDETERMINATE,
                    seq=result.terminal_seq,
                    by_abort=True,
                )
            )
        self._record_abort(name, stream_id, generation, aborted, OpOutcome.OK)

    def _record_abort(
        self,
        replica: str,
        stream_id: str,
        generation: str | None,
        acknowledged: bool,
        outcome: OpOutcome,
    ) -> None:
        self.history.append(
            AbortRequested(
                time=trio.current_time(),
                stream_id=stream_id,
                generation=generation,
                replica=replica,
                user_id=owner_of(stream_id),
                acknowledged=acknowledged,
                outcome=outcome,
            )
        )

    def attach(self, stream_id: str, replica: int, *, resume: bool, intruder: bool = False) -> None:
        manager = self._manager(replica)
        if manager is None:
            return
        name = self.replicas[replica % len(self.replicas)].name
        self._spawn(name, self._attach, manager, name, stream_id, resume, intruder)

    async def _attach(
        self,
        manager: GenerationJobManager,
        replica: str,
        stream_id: str,
        resume: bool,
        intruder: bool,
    ) -> None:
        user = "intruder" if intruder else owner_of(stream_id)
        snapshot: tuple[int, ...] = ()
        try:
            if resume:
                state, subscription = await manager.resume(stream_id, user)
                snapshot = state.folded_seqs
            else:
                subscription = await manager.subscribe(stream_id, user)
        except StreamAccessDenied:
            return
        except (RedisConnectionError, StreamActorStopped):
            return
        mode = SessionMode.RESUME if resume else SessionMode.SUBSCRIBE
        await self._open_session(replica, stream_id, subscription, user, mode, snapshot)

    async def _open_session(
        self,
        replica: str,
        stream_id: str,
        subscription: Subscription,
        user: str,
        mode: SessionMode,
        snapshot: tuple[int, ...] = (),
    ) -> None:
        self._session_counter += 1
        session = Session(
            f"{self._session_prefix}s{self._session_counter}",
            stream_id,
            replica,
            subscription,
            generation=subscription.generation,
        )
        self.sessions.append(session)
        self.history.append(
            SessionOpened(
                time=trio.current_time(),
                session=session.name,
                stream_id=stream_id,
                generation=subscription.generation,
                user_id=user,
                owner_id=owner_of(stream_id),
                replica=replica,
                mode=mode,
                first_seq=subscription.start_seq,
                snapshot_seqs=snapshot,
            )
        )
        await self._consume(session)

    # -- adversarial clients ---------------------------------------------------------

    def resume_at_cursor(self, stream_id: str, replica: int, which: int, *, stale: bool) -> None:
        """A client reattaches from a cursor it holds instead of asking for a snapshot:
        with ``stale``, a cursor older than a seq that client already got (it lost
        track of what it had); otherwise a cursor from an earlier turn of the same
        stream id (it never heard that a newer turn started). Either way it is owed the
        cursor's generation from the cursor on, and nothing of another turn."""
        manager = self._manager(replica)
        cursors = self.cursors(stream_id, stale=stale)
        if manager is None or not cursors:
            return
        generation, seq = cursors[which % len(cursors)]
        name = self.replicas[replica % len(self.replicas)].name
        self._spawn(name, self._attach_at, manager, name, stream_id, generation, seq + 1)

    def cursors(self, stream_id: str, *, stale: bool) -> list[tuple[str, int]]:
        """The cursors (generation, last seq held) clients of the stream hold that are
        stale (older than the latest chunk that client got, of the latest turn), or
        else of an earlier turn than the latest."""
        latest = self.generators.get(stream_id)
        if latest is None or latest.job is None:
            return []
        current = latest.job.generation
        cursors: list[tuple[str, int]] = []
        for session in self.sessions:
            if session.stream_id != stream_id or not session.received:
                continue
            if (session.generation == current) != stale:
                continue
            held = [session.subscription.start_seq - 1, *session.received]
            cursors += [(session.generation, seq) for seq in (held[:-1] if stale else held)]
        return cursors

    async def _attach_at(
        self,
        manager: GenerationJobManager,
        replica: str,
        stream_id: str,
        generation: str,
        start_seq: int,
    ) -> None:
        try:
            # As a server answering the cursor would, and as the manager's subscribe
            # and resume do: no job (expired, with its log), no stream. A job replaced
            # or ended means the reader must also ask, once caught up, whether its turn
            # is over.
            job = await manager.get_job(stream_id)
            if job is None or job.user_id != owner_of(stream_id):
                return
            ended = job.generation_id != generation or job.status.is_terminal
            subscription = await manager.transport.subscribe(
                stream_id, generation=generation, start_seq=start_seq, job_ended=ended
            )
        except (RedisConnectionError, StreamActorStopped):
            return
        await self._open_session(
            replica, stream_id, subscription, owner_of(stream_id), SessionMode.CURSOR
        )

    def catching_up(self) -> list[Session]:
        """Open sessions whose replica has not yet answered their catch-up's log read:
        nothing delivered yet, and a read of their stream's log waiting on their
        replica's connections (``RedisSource`` is the simulated Redis)."""
        if not isinstance(self.sim, SimRedis):
            return []
        reads = [
            (item.connection, item.description)
            for item in self.sim.pending()
            if item.kind == "command" and item.description.startswith("XRANGE ")
        ]
        found: list[Session] = []
        for session in self.sessions:
            if not session.open or session.received:
                continue
            client = f"{session.replica}.{self.replica_incarnation(session.replica)}/"
            log = Keys().chunks(session.stream_id)
            if any(c.startswith(client) and f" {log} " in d for c, d in reads):
                found.append(session)
        return found

    def detach_session(self, session: Session) -> None:
        session.scope.cancel()
        self._spawn(session.replica, self._detach, session)

    def replica_incarnation(self, name: str) -> int:
        return next(r.incarnation for r in self.replicas if r.name == name)

    def emit_retrying(self, stream_id: str) -> None:
        """The generator emits a chunk and, if the emit's outcome is unknown (its reply
        was lost with the connection), emits the same chunk once more: the
        implementation makes no idempotency promise, so a retry after a publish that
        did happen is a second event, which every reader must then see."""
        gen = self._ready_generator(stream_id)
        manager = None if gen is None else self._manager_named(gen.replica)
        if gen is None or manager is None:
            return
        gen.busy = True
        self._spawn(gen.replica, self._emit_retrying, manager, gen, self._next_chunk(gen))

    async def _emit_retrying(
        self, manager: GenerationJobManager, gen: Generator, payload: JSONValue
    ) -> None:
        outcome = await self._emit(manager, gen, EmitKind.CHUNK, payload)
        if outcome is not OpOutcome.INDETERMINATE or gen.finished or gen.live_job.aborted.is_set():
            return
        self.retried_emits += 1
        gen.busy = True
        await self._emit(manager, gen, EmitKind.CHUNK, payload)

    async def _consume(self, session: Session) -> None:
        reason = SessionEnd.CLOSED
        try:
            with session.scope:
                async for event in session.subscription:
                    if isinstance(event, Chunk):
                        session.received.append(event.seq)
                    self.history.append(
                        Delivered(
                            time=trio.current_time(),
                            session=session.name,
                            event=event,
                            payload_digest=event_digest(event),
                        )
                    )
                    if isinstance(event, Done | Failure):
                        reason = SessionEnd.TERMINAL
                    if self._stream_failed(session, event):
                        reason = SessionEnd.STREAM_FAILED
            if session.scope.cancelled_caught:
                reason = SessionEnd.DETACHED
            elif reason is SessionEnd.CLOSED and not self._replica_alive(session.replica):
                reason = SessionEnd.REPLICA_CRASHED
        except trio.Cancelled:
            reason = SessionEnd.REPLICA_CRASHED  # the serving replica died
            raise
        finally:
            if session.open:
                session.open = False
                self.history.append(
                    SessionClosed(time=trio.current_time(), session=session.name, reason=reason)
                )

    def _stream_failed(self, session: Session, event: StreamEvent) -> bool:
        """The session got its actor's typed failure after a fault injected there."""
        return (
            isinstance(event, Failure)
            and event.message == ACTOR_FAILED
            and (session.replica, session.stream_id) in self.hostile.faulted
        )

    def detach(self, which: int) -> None:
        open_sessions = [s for s in self.sessions if s.open]
        if not open_sessions:
            return
        session = open_sessions[which % len(open_sessions)]
        session.scope.cancel()
        self._spawn(session.replica, self._detach, session)

    def reconnect(self, which: int, replica: int, *, resume: bool) -> None:
        """A client drops one of the open sessions and at once attaches again to its
        stream, on ``replica`` (LibreChat's resume after a dropped connection)."""
        open_sessions = [s for s in self.sessions if s.open]
        if not open_sessions:
            return
        stream_id = open_sessions[which % len(open_sessions)].stream_id
        self.detach(which)
        self.attach(stream_id, replica, resume=resume)

    async def _detach(self, session: Session) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(RedisConnectionError):
            await session.subscription.aclose()

    def _replica_alive(self, name: str) -> bool:
        return any(r.name == name and r.alive for r in self.replicas)

    # -- liveness -----------------------------------------------------------------------

    def finish_all(self) -> None:
        """Heal phase: every unfinished generation on a live replica ends normally."""
        for gen in self.all_generators:
            if not (gen.busy or gen.finished or gen.job is None):
                self._finish(gen, error=False)

    def sample_bounds(self) -> None:
        """Record any resource past its bound (once per replica, stream and resource):
        an early buffer past its cap, or one the build adds."""
        bounds = (
            ResourceBound(
                "early buffer (events)",
                _early_buffer_events,
                self.settings.early_buffer_max_events,
            ),
            *self._build.bounds,
        )
        for replica in self.replicas:
            if replica.manager is None:
                continue
            for stats in replica.manager.transport.actor_statistics():
                for resource, reading, bound in bounds:
                    value = reading(stats)
                    key = (replica.name, stats.stream_id, resource)
                    if value > bound and key not in self._bounds_reported:
                        self._bounds_reported.add(key)
                        self.history.append(
                            BoundExceeded(
                                time=trio.current_time(),
                                replica=replica.name,
                                stream_id=stats.stream_id,
                                resource=resource,
                                value=value,
                                limit=bound,
                            )
                        )

    def audit_attached_readers(self) -> None:
        """Once all is quiet, a replica holds a reader only for a session still open
        there: a client that left (mid-catch-up too) or got its terminal leaves nothing
        behind. Recorded as a bound exceeded, the bound being the open sessions."""
        for replica in self.replicas:
            if replica.manager is None:
                continue
            attached = replica.manager.transport.statistics().subscribers
            open_here = sum(1 for s in self.sessions if s.open and s.replica == replica.name)
            if attached > open_here:
                self.history.append(
                    BoundExceeded(
                        time=trio.current_time(),
                        replica=replica.name,
                        stream_id="*",
                        resource="readers attached without an open session",
                        value=attached,
                        limit=open_here,
                    )
                )

    def record_fault(self, fault: FaultKind, detail: str = "") -> None:
        """Say in the history what the world did, so the checker can tell a gap or a slow
        path with a cause from one without."""
        self._faulted = True
        self.history.append(FaultInjected(time=trio.current_time(), fault=fault, detail=detail))

    def sample_slow_path(self) -> None:
        """Record any new slow-path delivery (a reorder timeout, events repaired from the
        log by a repair or an idle probe) per replica, from the transport's totals; over
        the simulated Redis, with how many of those events' live copies were still on
        their way when the log was read (``SlowPath.raced``), until a fault is recorded
        (from then on the fault is the cause, and the trace need not be read)."""
        sim = self.sim if isinstance(self.sim, SimRedis) else None
        since, self._trace_sampled = self._trace_sampled, sim.record_count() if sim else 0
        for replica in self.replicas:
            if replica.manager is None:
                continue
            totals = replica.manager.transport.statistics().delivery
            key = f"{replica.name}.{replica.incarnation}"
            now = (totals.repairs, totals.repaired_events + totals.probe_repaired_events)
            before = self._slow_path_seen.get(key, (0, 0))
            if now != before:
                self._slow_path_seen[key] = now
                repaired = now[1] - before[1]
                raced = 0
                if sim is not None and repaired and not self._faulted:
                    raced = raced_log_entries(sim.records, since=since, client=key)
                self.history.append(
                    SlowPath(
                        time=trio.current_time(),
                        replica=replica.name,
                        reorder_timeouts=now[0] - before[0],
                        log_repaired=repaired,
                        raced=min(raced, repaired),
                    )
                )

    # -- job listings ---------------------------------------------------------------------

    def list_jobs(self, stream_id: str, replica: int) -> None:
        """The stream's owner lists their active jobs on ``replica`` (which heals the
        user's index as it reads it); ``listings`` keeps each answer."""
        self.list_jobs_of(owner_of(stream_id), replica)

    def list_jobs_of(self, user_id: str, replica: int) -> None:
        manager = self._manager(replica)
        if manager is not None:
            name = self.replicas[replica % len(self.replicas)].name
            self._spawn(name, self._list_jobs, manager, user_id)

    async def _list_jobs(self, manager: GenerationJobManager, user_id: str) -> None:
        with contextlib.suppress(RedisConnectionError):
            listed = await manager.job_store.get_active_job_ids_by_user(user_id)
            self.listings.append((user_id, tuple(listed)))

    # -- adversarial generators ------------------------------------------------------

    def emit_after_end(self, stream_id: str) -> None:
        """The stream's latest generator emits a chunk whatever it was told: after its
        own terminal, after an abort, while another emit is on its way. Only the publish
        fence may keep such a chunk from readers."""
        gen = self.generators.get(stream_id)
        if gen is None or gen.job is None or gen.busy:
            return  # a generator makes one emit at a time, even a rude one
        manager = self._manager_named(gen.replica)
        if manager is None or not _serves(manager, stream_id, gen.job.generation, absent=True):
            return  # the replica serves a newer turn: this emit would be that turn's
        gen.busy = True
        self._spawn(gen.replica, self._emit, manager, gen, EmitKind.CHUNK, self._next_chunk(gen))

    def finish_then_emit(self, stream_id: str) -> None:
        """The generator emits its done and, before it records the turn's end, one more
        chunk (a generator whose loop outlives its done): the fence must refuse it."""
        gen = self._ready_generator(stream_id)
        manager = None if gen is None else self._manager_named(gen.replica)
        if gen is None or manager is None:
            return
        gen.busy = True
        self._spawn(gen.replica, self._finish_then_emit, manager, gen)

    async def _finish_then_emit(self, manager: GenerationJobManager, gen: Generator) -> None:
        final: JSONValue = {"final": gen.live_job.generation}
        generation = gen.live_job.generation
        await self._emit(manager, gen, EmitKind.DONE, final, complete=False)
        # Busy throughout, as one generator's loop is: no new turn of the stream may
        # start here until this one recorded its end (complete_job goes by stream id).
        gen.busy = True
        try:
            if _serves(manager, gen.stream_id, generation):
                await self._emit(manager, gen, EmitKind.CHUNK, self._next_chunk(gen))
                gen.busy = True
            if _serves(manager, gen.stream_id, generation):
                with contextlib.suppress(RedisConnectionError):
                    await manager.complete_job(gen.stream_id)
        finally:
            gen.finished = True
            gen.busy = False

    def emit_from_replaced_turn(self, stream_id: str) -> None:
        """A generator of an older turn of the stream, on a replica that has not served a
        newer one, emits a chunk: the new turn replaced it and the fence must refuse it."""
        current = self.generators.get(stream_id)
        for gen in reversed(self.all_generators):
            if gen is current or gen.stream_id != stream_id or gen.job is None or gen.busy:
                continue
            manager = self._manager_named(gen.replica)
            if manager is None or not _serves(manager, stream_id, gen.job.generation):
                continue
            gen.busy = True
            self._spawn(
                gen.replica, self._emit, manager, gen, EmitKind.CHUNK, self._next_chunk(gen)
            )
            return

    def coverage_labels(self) -> set[str]:
        """Names of the rare paths this run exercised (reported with hypothesis.event)."""
        totals = list(self.crashed_delivery)
        totals += [r.manager.transport.statistics().delivery for r in self.replicas if r.manager]
        labels: set[str] = set()
        if any(t.late_fills for t in totals):
            labels.add("gap filled late")
        if any(t.repaired_events for t in totals):
            labels.add("gap repaired from the log")
        if any(t.duplicates_dropped for t in totals):
            labels.add("duplicate dropped")
        if any(t.gaps for t in totals):
            labels.add("gap signalled")
        labels |= _history_labels(self.history, self.crash_marks)
        if self.detached_catching_up:
            labels.add("detach during a catch-up")
        if self.retried_emits:
            labels.add("emit retried after a lost reply")
        if isinstance(self.sim, SimRedis):
            if self.sim.statistics().writes_lost:
                labels.add("failover lost writes")
            if _published_a_batch(self.sim):
                labels.add("coalesced batch published")
        return labels


def _serves(
    manager: GenerationJobManager, stream_id: str, generation: str, *, absent: bool = False
) -> bool:
    """Whether an emit for ``generation`` through ``manager`` is that generation's: the
    replica still runs it (or, with ``absent``, runs no turn of the stream at all)."""
    local = manager.local_job(stream_id)
    return absent if local is None else local.generation == generation


def _published_a_batch(sim: SimRedis) -> bool:
    """Whether a script published several events in one message (coalesced emits)."""
    return any(
        isinstance(record, CommandExecuted)
        and any(p.message.startswith("[") for p in record.published)
        for record in sim.records
    )


def _early_buffer_events(stats: ActorStats) -> int:
    return stats.early_buffer_events


def _history_labels(history: History, crash_marks: list[int]) -> set[str]:
    labels: set[str] = set()
    turns: dict[str, int] = {}
    emitted_chunk_before: dict[str, int] = {}
    open_sessions: dict[str, set[str]] = {}
    stream_of: dict[str, str] = {}
    detached_streams: set[str] = set()
    latest_turn: dict[str, str] = {}
    #: (session, payload digest) of every chunk delivered, for retries seen twice.
    chunks_seen: set[tuple[str, str | None]] = set()
    for record in history.records:
        if isinstance(record, GenerationStarted):
            turns[record.stream_id] = turns.get(record.stream_id, 0) + 1
            latest_turn[record.stream_id] = record.generation
            if turns[record.stream_id] > 1:
                labels.add("new turn on a reused stream id")
        elif isinstance(record, Emitted):
            if record.kind is EmitKind.CHUNK and record.outcome is OpOutcome.OK:
                emitted_chunk_before[record.generation] = record.index
        elif isinstance(record, Delivered) and isinstance(record.event, Chunk):
            seen = (record.session, record.payload_digest)
            if seen in chunks_seen:
                labels.add("retried emit delivered twice")
            chunks_seen.add(seen)
        elif (
            isinstance(record, Delivered)
            and isinstance(record.event, Gap)
            and record.event.reason in (GapReason.WRITES_LOST, GapReason.POSSIBLY_LOST)
        ):
            labels.add("lost writes signalled as a gap")
        elif isinstance(record, SessionOpened):
            stream_of[record.session] = record.stream_id
            open_sessions.setdefault(record.stream_id, set()).add(record.session)
            if record.mode is SessionMode.SUBSCRIBE and record.generation in emitted_chunk_before:
                labels.add("subscribe acknowledged after emits")
            if record.mode is SessionMode.RESUME and any(m < record.index for m in crash_marks):
                labels.add("resume after a crash")
            if record.mode is SessionMode.CURSOR:
                if latest_turn.get(record.stream_id) == record.generation:
                    labels.add("resume from a stale cursor")
                else:
                    labels.add("resume from an earlier turn's cursor")
        elif isinstance(record, SessionClosed):
            stream = stream_of.get(record.session)
            if stream is not None:
                open_sessions.get(stream, set()).discard(record.session)
                if record.reason is SessionEnd.DETACHED:
                    detached_streams.add(stream)
        elif (
            isinstance(record, AbortRequested)
            and record.acknowledged
            and record.stream_id in detached_streams
            and not open_sessions.get(record.stream_id)
        ):
            labels.add("abort during a reconnect")
    return labels
