"""The Hypothesis state machine: interleaved subscribe / emit / abort / failover.

A plain ``hypothesis.stateful.RuleBasedStateMachine`` (hypothesis-trio is broken with
current Hypothesis) driving a :class:`Simulation` whose trio loop it steps one decision at a time.
Every rule is one decision; safety is checked after each, liveness after the heal
phase in ``teardown``. Fault families are switched on per example (swarm testing), so
some examples run with no faults at all and others with many of one kind.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from pathlib import Path
from typing import ClassVar

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from streamcheck.model import CheckReport
from streamcheck.properties._hostile import (
    ABORT_REACTIONS,
    FORGERIES,
    Forgery,
    channel_figures,
    hostile_labels,
)
from streamcheck.properties._replay import write_crash_replay_file, write_replay_file
from streamcheck.properties._run_limits import (
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    MIN_REPLICAS,
    SimBackend,
)
from streamcheck.properties._simulation import Decision, Simulation, SimulationCrashed
from streamcheck.properties.canaries import Canary

#: Seconds a user reads between two turns in ``next_turn``: past the simulation's
#: cleanup interval (10 s), short of its producer timeout (30 s).
READING_PAUSE_S = 11.0
#: Clock jumps of ``wait_past_expiry``: past the producer timeout (30 s), then past a
#: finished job's TTL (300 s), each settled.
EXPIRY_WAIT_S = (31.0, 150.0, 151.0)
STREAM_IDS = ("s0", "s1")
STREAMS = st.sampled_from(STREAM_IDS)


@functools.cache
def _replica_index(count: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=count - 1)


#: A replica of the machine's world (drawn like ``st.integers(0, 1)`` with two).
REPLICAS = st.runner().flatmap(lambda machine: _replica_index(machine.replica_count))


class Fault(enum.Enum):
    DROP = "drop"
    DISCONNECT = "disconnect"
    FAILOVER = "failover"
    CRASH = "crash"
    CLOCK = "clock"
    #: Not a fault but a topology: Redis Cluster's relayed pub/sub (SimRedis.relay_pubsub).
    RELAYED_PUBSUB = "relayed-pubsub"
    #: Not a fault of the system but of its user: generators that emit after they were
    #: told to stop, after their own done, or from a replaced turn (``rude_emit``).
    RUDE_GENERATORS = "rude-generators"
    #: Hostile inputs (properties/_hostile.py): a foreign client on the channels, a
    #: generator that obeys an abort with its own error, a failing actor.
    HOSTILE = "hostile"


#: The fault families each backend draws from. The memory backend is one process's
#: memory: no message is lost, no connection cut, no failover, no replica restarted on
#: its own, no foreign client on its channels (docs/simulation.md).
FAULTS: dict[SimBackend, tuple[Fault, ...]] = {
    SimBackend.REDIS: tuple(Fault),
    SimBackend.MEMORY: (Fault.CLOCK, Fault.RUDE_GENERATORS, Fault.HOSTILE),
}


class StreamMachine(RuleBasedStateMachine):
    #: Canaries switched on in every replica (see :func:`machine_for`).
    canaries: ClassVar[frozenset[Canary]] = frozenset()
    #: Replicas in each example's world.
    replica_count: ClassVar[int] = DEFAULT_REPLICAS
    #: What the replicas share: the simulated Redis or the memory backend.
    backend: ClassVar[SimBackend] = SimBackend.REDIS
    #: Where a failing example writes its replay file (the last one written is the
    #: shrunk example, because Hypothesis replays it last).
    failure_path: ClassVar[Path | None] = None
    #: The report of the last failing example, for callers that classify failures.
    last_failure: ClassVar[CheckReport | None] = None
    #: How many examples reached each rare path (see World.coverage_labels).
    labels_seen: ClassVar[Counter[str]]
    #: Channel messages the replicas dropped, summed over examples (channel_figures).
    channel_seen: ClassVar[Counter[str]]

    #: Pub/sub messages in flight, named by ``messages_in_flight`` so that a rule can
    #: deliver or lose one of them by name (shrinks to "that message", not "the k-th").
    messages = Bundle("messages")

    def __init__(self) -> None:
        super().__init__()
        #: Message ids already put in the bundle.
        self._named: set[int] = set()
        self.sim = Simulation(
            replicas=self.replica_count, canaries=self.canaries, backend=self.backend
        )
        self.faults: frozenset[Fault] = frozenset()
        #: Set when a safety check failed: teardown then skips the heal, so the replay
        #: file keeps the history exactly as it was at the failure.
        self._failed = False
        #: History length at the last safety check.
        self._judged_length = 0
        #: Decisions made when the previous rule ended.
        self._decided = 0

    def _do(self, name: str, **args: object) -> None:
        decision = Decision(name, dict(args))
        note(str(decision))
        try:
            self.sim.apply(decision)
        except SimulationCrashed as exc:
            # A crash is a finding too: keep the decisions that led to it, so that
            # `streamcheck replay` reproduces it without Hypothesis.
            self._failed = True
            if self.failure_path is not None:
                write_crash_replay_file(
                    self.failure_path, name=type(self).__name__, simulation=self.sim, crash=exc
                )
            raise

    @initialize(faults=st.frozensets(st.sampled_from(Fault)))
    def choose_faults(self, faults: frozenset[Fault]) -> None:
        # Drawn from every family and then cut to the backend's, so that the simulated
        # Redis's examples stay exactly what a seed always drew.
        faults &= frozenset(FAULTS[self.backend])
        self.faults = faults
        note(f"faults: {sorted(f.value for f in faults)}")
        if Fault.RELAYED_PUBSUB in faults:
            self._do("relay_pubsub")

    @rule(stream=STREAMS, replica=REPLICAS, settled=st.booleans())
    def create(self, stream: str, replica: int, settled: bool) -> None:
        self._do("create", stream=stream, replica=replica)
        if settled:
            self._do("settle")

    @rule(stream=STREAMS, producer=REPLICAS, reader=REPLICAS)
    def conversation(self, stream: str, producer: int, reader: int) -> None:
        """A macro step: a turn starts and a client is attached to it, both settled.

        Interesting interleavings mostly happen *inside* a live conversation; reaching
        one decision at a time is rare enough that bugs hid behind it.
        """
        self._do("create", stream=stream, replica=producer)
        self._do("settle")
        self._do("subscribe", stream=stream, replica=reader)
        self._do("settle")

    @rule(
        stream=STREAMS,
        producer=REPLICAS,
        n=st.integers(4, 12),
        mode=st.sampled_from(["subscribe", "resume"]),
    )
    def unread_turn(self, stream: str, producer: int, n: int, mode: str) -> None:
        """A macro step: a turn starts and emits ``n`` chunks before anyone reads it on
        its replica, then its first local reader attaches there.

        That reader takes the producer's early buffer (or, past the buffer's bound,
        catches up from the log): the buffer's bound and its hand-over are only reached
        when a turn runs unread for a while, which decisions drawn one at a time seldom
        arranged.
        """
        self._do("create", stream=stream, replica=producer)
        self._do("settle")
        self._do("burst", stream=stream, n=n)
        self._do(mode, stream=stream, replica=producer)
        self._do("settle")

    @rule(stream=STREAMS, producer=REPLICAS, reader=REPLICAS)
    def next_turn(self, stream: str, producer: int, reader: int) -> None:
        """A macro step: the turn in progress (if any) ends, the user reads for a while
        (a cleanup pass, not yet a producer timeout), then asks again on the same
        conversation, so the same stream id, and a client attaches to the new turn.

        State that outlives a turn (counters, frontiers, cleanup) is where LibreChat's
        cross-turn bugs lived; without time between turns no cleanup ever ran there.
        """
        self._do("finish", stream=stream, error=False)
        self._do("settle")
        self._do("jump", dt=READING_PAUSE_S)
        self._do("settle")
        self.conversation(stream, producer, reader)

    @rule(stream=STREAMS)
    def emit(self, stream: str) -> None:
        self._do("emit", stream=stream)

    @rule(stream=STREAMS, n=st.integers(2, 12))
    def burst(self, stream: str, n: int) -> None:
        self._do("burst", stream=stream, n=n)

    @rule(stream=STREAMS, n=st.integers(2, 6))
    def generate(self, stream: str, n: int) -> None:
        """The generator starts a loop of ``n`` chunks, each awaited before the next;
        later decisions step it along, interleaved with everything else."""
        self._do("generate", stream=stream, n=n)

    @rule(stream=STREAMS, n=st.integers(1, 12))
    def submit(self, stream: str, n: int) -> None:
        """The generator queues ``n`` chunks without awaiting them (coalesced emits):
        its replica publishes them in batches, each chunk with its own seq, while later
        decisions go on (an ``end`` queues the terminal behind them)."""
        self._do("submit", stream=stream, n=n)

    @rule(stream=STREAMS, how=st.sampled_from(["done", "error", "abort-r0", "abort-r1"]))
    def end(self, stream: str, how: str) -> None:
        """End a turn: the generator finishes (done or error) or a client aborts it
        (on replica 0 or 1, whatever the replica count)."""
        if how.startswith("abort"):
            self._do("abort", stream=stream, replica=int(how[-1]) % self.replica_count)
        else:
            self._do("finish", stream=stream, error=how == "error")

    @rule(
        stream=STREAMS,
        replica=REPLICAS,
        mode=st.sampled_from(["subscribe"] * 4 + ["resume"] * 2 + ["intrude", "list_jobs"]),
        settled=st.booleans(),
    )
    def attach(self, stream: str, replica: int, mode: str, settled: bool) -> None:
        """A client attaches (subscribe or resume), or another user tries to, or the
        stream's owner lists their active jobs (which heals their job index)."""
        self._do(mode, stream=stream, replica=replica)
        if settled:
            self._do("settle")

    @rule(which=st.integers(0, 7))
    def detach(self, which: int) -> None:
        self._do("detach", which=which)

    @rule(
        stream=STREAMS,
        producer=REPLICAS,
        replica=REPLICAS,
        which=st.integers(0, 7),
        stale=st.booleans(),
        settled=st.booleans(),
    )
    def resume_at_cursor(
        self, stream: str, producer: int, replica: int, which: int, stale: bool, settled: bool
    ) -> None:
        """A client reattaches from a cursor it holds: one older than a seq it already
        got (``stale``), or one from an earlier turn of the same stream id. If no client
        holds such a cursor yet, one is made first: a reader gets a chunk of the turn in
        progress (started on ``producer`` if none is), and, for an earlier turn's
        cursor, a newer turn then replaces it."""
        world = self.sim.world
        assert world is not None
        if not world.cursors(stream, stale=stale):
            if not world.in_progress(stream):
                self._do("create", stream=stream, replica=producer)
                self._do("settle")
            self._do("subscribe", stream=stream, replica=replica)
            self._do("settle")
            self._do("emit", stream=stream)
            self._do("settle")
            if not stale:
                self._do("create", stream=stream, replica=producer)
                self._do("settle")
        self._do("resume_at_cursor", stream=stream, replica=replica, which=which, stale=stale)
        if settled:
            self._do("settle")

    @rule(stream=STREAMS, producer=REPLICAS, reader=REPLICAS, aborter=REPLICAS)
    def abort_while_away(self, stream: str, producer: int, reader: int, aborter: int) -> None:
        """A macro step: a client reading a turn drops, the turn is aborted (from
        another tab, on any replica) while it is away, and it resumes. What it finds on
        return must be the abort's end, however the abort and its leaving interleaved."""
        world = self.sim.world
        assert world is not None
        if not world.in_progress(stream):
            self._do("create", stream=stream, replica=producer)
            self._do("settle")
        self._do("subscribe", stream=stream, replica=reader)
        self._do("settle")
        self._do("detach", which=-1)  # the newest open session: the one just made
        self._do("abort", stream=stream, replica=aborter)
        self._do("settle")
        self._do("resume", stream=stream, replica=reader)
        self._do("settle")

    @rule(stream=STREAMS, replica=REPLICAS, mode=st.sampled_from(["subscribe", "resume"]))
    def detach_catching_up(self, stream: str, replica: int, mode: str) -> None:
        """A client attaches and leaves while its replica still reads the log for it."""
        self._do("detach_catching_up", stream=stream, replica=replica, mode=mode)
        self._do("settle")

    @rule(
        which=st.integers(0, 7),
        replica=REPLICAS,
        mode=st.sampled_from(["resume", "subscribe"]),
        cycles=st.integers(1, 3),
        settled=st.booleans(),
    )
    def reconnect(self, which: int, replica: int, mode: str, cycles: int, settled: bool) -> None:
        """A macro step: a client drops and comes back at once on ``replica``, perhaps
        several times in a row (a flaky network), each attachment settled before the
        next drop.

        Reconnect cycles are what resumable streams are for; several in a row on one
        replica, one decision at a time, were rare enough that bugs hid behind them.
        """
        for cycle in range(cycles):
            # Later cycles drop the attachment just made: the newest open session.
            self._do("reconnect", which=which if cycle == 0 else -1, replica=replica, mode=mode)
            if settled or cycle < cycles - 1:
                self._do("settle")

    @rule(
        stream=STREAMS,
        producer=REPLICAS,
        replica=REPLICAS,
        mode=st.sampled_from(["subscribe", "resume"]),
        then=st.sampled_from(["emit", "done", "error"]),
    )
    def attach_during(self, stream: str, producer: int, replica: int, mode: str, then: str) -> None:
        """A macro step: a client attaches to a turn in progress (the drawn stream's,
        else the other's, else a new one on ``producer``) just after it emitted a chunk
        whose messages are still on their way, while its generator moves on; then
        everything settles.

        The attachment boundary is where the design's promises are hardest (no gap and
        no duplicate, on any replica); one decision at a time rarely put a generator
        step inside an attachment, so bugs hid behind it.
        """
        world = self.sim.world
        assert world is not None
        if not world.in_progress(stream):
            stream = next((s for s in STREAM_IDS if world.in_progress(s)), stream)
        if not world.in_progress(stream):
            self._do("create", stream=stream, replica=producer)
            self._do("settle")
        self._do("emit", stream=stream)
        self._do("pump")
        self._do(mode, stream=stream, replica=replica)
        if then == "emit":
            self._do("emit", stream=stream)
        else:
            self._do("finish", stream=stream, error=then == "error")
        self._do("settle")

    @precondition(lambda self: Fault.RUDE_GENERATORS in self.faults)
    @rule(
        stream=STREAMS,
        how=st.sampled_from(["emit_after_end", "finish_then_emit", "emit_from_replaced_turn"]),
    )
    def rude_emit(self, stream: str, how: str) -> None:
        """An adversarial generator emits a chunk whatever it was told: after an abort or
        its turn's end, right after its own done (before it records the end), or from a
        turn a newer one replaced. Only the publish fence may keep it from readers."""
        self._do(how, stream=stream)

    @rule(
        stream=STREAMS,
        aborter=REPLICAS,
        n=st.integers(2, 6),
        steps=st.integers(0, 4),
        rude=st.booleans(),
    )
    def abort_during_generate(
        self, stream: str, aborter: int, n: int, steps: int, rude: bool
    ) -> None:
        """A macro step: the turn in progress (if any) runs a generate loop and an abort
        lands part-way through it, on any replica; a rude generator then emits once
        more. The abort's race with a loop's emits (claim, signal, fence) is where abort
        bugs live, and reaching it one decision at a time was rare."""
        world = self.sim.world
        assert world is not None
        if not world.in_progress(stream):
            return
        self._do("generate", stream=stream, n=n)
        for k in range(steps):
            self._do("step", k=k)
        self._do("abort", stream=stream, replica=aborter)
        self._do("pump")
        if rude and Fault.RUDE_GENERATORS in self.faults:
            self._do("emit_after_end", stream=stream)
        self._do("settle")

    @rule(k=st.integers(0, 15))
    def step(self, k: int) -> None:
        self._do("step", k=k)

    @rule()
    def pump(self) -> None:
        self._do("pump")

    @rule(k=st.integers(0, 15))
    def deliver(self, k: int) -> None:
        self._do("deliver", k=k)

    @rule(target=messages)
    def messages_in_flight(self) -> object:
        """Name the messages now in flight (no decision: nothing changes)."""
        new = [i for i in self.sim.in_flight_messages() if i not in self._named]
        self._named.update(new)
        return multiple(*new)

    @rule(message=consumes(messages))
    def deliver_message(self, message: int) -> None:
        self._do("deliver_item", item=message)

    @rule()
    def settle(self) -> None:
        self._do("settle")

    @rule(seed=st.integers(1, 2**16 - 1))
    def shuffle_tasks(self, seed: int) -> None:
        """Order the tasks each later step wakes together another way: trio runs a
        batch of runnable tasks in a shuffled order, here seeded by the test."""
        self._do("shuffle_tasks", seed=seed)

    @rule(seed=st.integers(0, 2**16 - 1), depth=st.integers(1, 3))
    def pct(self, seed: int, depth: int) -> None:
        """Run everything pending in a PCT order (priorities per lane, depth - 1
        priority changes): reaches deep orderings a uniform step choice rarely does."""
        self._do("pct", seed=seed, depth=depth)

    @precondition(lambda self: Fault.DROP in self.faults)
    @rule(k=st.integers(0, 15))
    def drop(self, k: int) -> None:
        self._do("drop", k=k)

    @precondition(lambda self: Fault.DROP in self.faults)
    @rule(message=consumes(messages))
    def drop_message(self, message: int) -> None:
        self._do("drop_item", item=message)

    @precondition(lambda self: Fault.DROP in self.faults)
    @rule(stream=STREAMS, k=st.integers(0, 3))
    def lossy_emit(self, stream: str, k: int) -> None:
        self._do("lossy_emit", stream=stream, k=k)

    @precondition(lambda self: Fault.DISCONNECT in self.faults)
    @rule(k=st.integers(0, 7))
    def disconnect(self, k: int) -> None:
        self._do("disconnect", k=k)

    @precondition(lambda self: Fault.DISCONNECT in self.faults)
    @rule(stream=STREAMS)
    def lost_reply_emit(self, stream: str) -> None:
        """Redis runs a chunk's publish and the connection drops before the reply: the
        generator cannot know whether it was published and emits the chunk again."""
        self._do("lost_reply_emit", stream=stream)
        self._do("settle")

    @precondition(lambda self: Fault.FAILOVER in self.faults)
    @rule()
    def failover(self) -> None:
        self._do("failover")

    @precondition(lambda self: Fault.FAILOVER in self.faults)
    @rule(stream=STREAMS)
    def failover_after_emit(self, stream: str) -> None:
        """A chunk is acknowledged to its generator and lost by the failover."""
        self._do("failover_after_emit", stream=stream)

    @precondition(lambda self: Fault.CLOCK in self.faults)
    @rule(dt=st.sampled_from([0.1, 0.6, 2.5, 31.0]))
    def jump(self, dt: float) -> None:
        self._do("jump", dt=dt)

    @precondition(lambda self: Fault.CLOCK in self.faults)
    @rule(stream=STREAMS, reader=REPLICAS)
    def wait_past_expiry(self, stream: str, reader: int) -> None:
        """A macro step: a client attaches and then nothing happens for a long time: past
        the producer timeout (its readers judge the silent producer lost) and past the
        finished job's TTL, so the job expires while the generator still holds its turn
        and readers still wait. Whatever the generator or a reader does next meets a
        job that is gone."""
        self._do("subscribe", stream=stream, replica=reader)
        self._do("settle")
        for dt in EXPIRY_WAIT_S:
            self._do("jump", dt=dt)
            self._do("settle")

    @precondition(lambda self: Fault.CRASH in self.faults)
    @rule(replica=REPLICAS, restart=st.booleans())
    def crash(self, replica: int, restart: bool) -> None:
        self._do("restart" if restart else "crash", replica=replica)

    @precondition(lambda self: Fault.CRASH in self.faults)
    @rule(stream=STREAMS, producer=REPLICAS, reader=REPLICAS, restart=st.booleans())
    def crash_then_resume(self, stream: str, producer: int, reader: int, restart: bool) -> None:
        """A macro step: a client reads a turn (the drawn stream's, started on
        ``producer`` if none is running) on ``reader``; that replica dies, perhaps
        restarting at once, and the client resumes on the next replica. Resuming after
        the serving replica died is what resumable streams are for; a crash and then a
        resume of a live turn, one decision at a time, were rare enough that no run of
        300 examples reached them."""
        world = self.sim.world
        assert world is not None
        if not world.in_progress(stream):
            self._do("create", stream=stream, replica=producer)
            self._do("settle")
        self._do("subscribe", stream=stream, replica=reader)
        self._do("settle")
        self._do("crash", replica=reader)
        if restart:
            self._do("restart", replica=reader)
        self._do("resume", stream=stream, replica=(reader + 1) % self.replica_count)
        self._do("settle")

    # -- hostile inputs (properties/_hostile.py) ---------------------------------------

    @precondition(lambda self: Fault.HOSTILE in self.faults and self.backend is SimBackend.REDIS)
    @rule(
        stream=STREAMS,
        # Another generation's events, which readers once took as a newer turn, half
        # the time; every form the other half.
        form=st.one_of(st.just(Forgery.OTHER_GENERATION.value), st.sampled_from(FORGERIES)),
        which=st.integers(0, 11),
    )
    def forge(self, stream: str, form: str, which: int) -> None:
        """A foreign client publishes on a stream's channel: the drawn one if someone
        hears it, else one that someone hears (a forgery nobody hears tests nothing): a
        reader for events, a live generator for an abort signal."""
        world = self.sim.world
        assert world is not None
        if form == Forgery.ABORT.value:
            heard = {s for s, g in world.generators.items() if g.job and not g.finished}
        else:
            heard = {s.stream_id for s in world.sessions if s.open}
        if stream not in heard:
            stream = next((s for s in STREAM_IDS if s in heard), stream)
        self._do("forge", stream=stream, form=form, which=which)

    @precondition(lambda self: Fault.HOSTILE in self.faults and self.backend is SimBackend.REDIS)
    @rule(stream=STREAMS)
    def forge_abort(self, stream: str) -> None:
        """A foreign client sends an abort signal for a live generation, which no abort
        claimed (a rule of its own: as one form among the others, it was drawn in 3
        examples of 549)."""
        self.forge(stream, Forgery.ABORT.value, 0)

    @precondition(lambda self: Fault.HOSTILE in self.faults)
    @rule(how=st.sampled_from(ABORT_REACTIONS))
    def abort_reaction(self, how: str) -> None:
        """Generators stopped by an abort end their turn with their own done or error."""
        self._do("abort_reaction", how=how)

    @precondition(lambda self: Fault.HOSTILE in self.faults)
    @rule(replica=REPLICAS, stream=STREAMS)
    def actor_fault(self, replica: int, stream: str) -> None:
        """An unexpected error inside one stream's actor on one replica."""
        self._do("actor_fault", replica=replica, stream=stream)

    def _judge(self, report: CheckReport) -> None:
        if report.ok:
            return
        self._failed = True
        type(self).last_failure = report
        for kind in report.by_kind():
            event(f"anomaly: {kind.value}")
        if self.failure_path is not None:
            write_replay_file(
                self.failure_path, name=type(self).__name__, simulation=self.sim, report=report
            )
        raise AssertionError(report.summary())

    @invariant()
    def safe(self) -> None:
        # Invariants run after every rule: count the rules that decided something.
        decided = len(self.sim.decisions)
        if decided != self._decided:
            self._decided = decided
            self.sim.rule_steps += 1
        # A decision that recorded nothing cannot have broken a safety property.
        recorded = self.sim.history_length()
        if recorded != self._judged_length:
            self._judged_length = recorded
            self._judge(self.sim.safety_report())

    def teardown(self) -> None:
        try:
            if self._failed:
                return
            report = self.sim.heal()
            assert self.sim.world is not None
            labels = self.sim.world.coverage_labels() | hostile_labels(self.sim.world)
            for label in sorted(labels):
                event(label)
                self.labels_seen[label] += 1
            self.channel_seen.update(channel_figures(self.sim.world))
            self._judge(report)
        finally:
            self.sim.close()


def machine_for(
    canaries: frozenset[Canary] = frozenset(),
    *,
    failure_path: Path | None = None,
    replicas: int = DEFAULT_REPLICAS,
    backend: SimBackend = SimBackend.REDIS,
) -> type[StreamMachine]:
    """A state machine class with the given canaries on, ``replicas`` replicas in each
    example's world sharing ``backend``, and replay files written."""
    if not MIN_REPLICAS <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be {MIN_REPLICAS} to {MAX_REPLICAS}, not {replicas}")
    label = "_".join(sorted(c.name for c in canaries)) or "correct"
    return type(
        f"StreamMachine_{label}_{replicas}_{backend.name.lower()}",
        (StreamMachine,),
        {
            "canaries": canaries,
            "replica_count": replicas,
            "backend": backend,
            "failure_path": failure_path,
            "last_failure": None,
            "labels_seen": Counter(),
            "channel_seen": Counter(),
        },
    )
