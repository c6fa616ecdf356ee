"""The hostile world (issue 17): what an untrusted channel, an abort-obeying generator
and a failing actor do to a run, and how the run judges them.

Three kinds of decision live here, beside the world's own (``properties/_world.py``),
so that they compose with any rule set:

* ``forge``: a foreign client, holding no replica's role, publishes on a stream's
  channel (:class:`Forgery` lists the forms: malformed bytes, wrong types, another
  generation's events, absurd and negative seqs, the turn's own generation at a seq
  the counter never handed out, and verbatim replays of messages the log holds, of this
  turn and earlier ones), and an abort signal for the live generation that no abort
  claimed. Anyone who can PUBLISH on the Redis can do this; the replicas must treat the
  channel as hints and the log and the job as the truth.
* ``abort_reaction``: how a generator told to stop by an abort ends its turn at once,
  with its own done or its own error (the abort must already hold the turn).
* ``actor_fault``: an unexpected error inside one stream's actor on one replica, through
  a seam (:class:`FaultInjectingActor`), never a branch in impl/.

The checker in model/ judges what they cause (phantom content, a false gap, a lost
event, a terminal after the stop); :func:`false_supersedes` adds the one judgement the
history cannot make alone: a reader ended "superseded" while no newer turn of its
stream was ever started.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from streamcheck.impl import Keys, ReplicaParts
from streamcheck.impl.redis import RedisConnectionError, RedisLike
from streamcheck.impl.seams import SUPERSEDED, Command, Rearm, StreamActor
from streamcheck.impl.transport import MAX_SEQ, encode_abort, encode_split
from streamcheck.model import (
    Anomaly,
    AnomalyKind,
    CheckReport,
    Delivered,
    Failure,
    History,
    SessionOpened,
    WritesLost,
)
from streamcheck.properties._memory_sim import SharedMemory

if TYPE_CHECKING:
    from streamcheck.properties._world import World

#: The name of the foreign client's connections (never a replica's).
FOREIGN_CLIENT = "foreign.0"
#: Generations nobody started: forged events carry one of these.
FORGED_GENERATIONS: Final = ("forged-1", "forged-2")
#: Rows of the log the replay forgery chooses from.
REPLAY_WINDOW = 64


class Forgery(enum.StrEnum):
    """What the foreign client publishes (``which`` picks a variant of each)."""

    #: Not JSON, binary junk, an empty message, a JSON array.
    GARBAGE = "garbage"
    #: JSON objects with fields of the wrong types (a string seq, a float seq, a
    #: numeric generation, a list body, an unknown type).
    WRONG_TYPES = "wrong-types"
    #: A well-formed chunk, done or error of a generation nobody started, at the two
    #: seqs the stream's counter hands out next.
    OTHER_GENERATION = "other-generation"
    #: Seqs far past any counter: 1e14 (Lua's float notation), 2^53 - 1, 2^53, 1e300.
    ABSURD_SEQ = "absurd-seq"
    #: Negative seqs.
    NEGATIVE_SEQ = "negative-seq"
    #: The turn's own generation at a seq far ahead of what the counter handed out.
    OWN_GENERATION_AHEAD = "own-generation-ahead"
    #: A verbatim copy of a message the chunk log holds (this turn's or an earlier one's).
    REPLAY = "replay"
    #: An abort signal for the live generation, which no abort claimed: obeyed, its
    #: generator would stop and end the turn with its own terminal, which nobody asked for.
    ABORT = "abort"


FORGERIES: Final = tuple(f.value for f in Forgery)
ABORT_REACTIONS: Final = ("done", "error")


@dataclass(slots=True)
class HostileState:
    """What the hostile decisions set in one world."""

    #: How a generator stopped by an abort ends its turn at once: ``done`` or ``error``.
    abort_reaction: str = "done"
    #: (replica, stream) pairs whose actor was made to fail: readers served there may
    #: end with the actor's typed failure, which ends their session like a crash.
    faulted: set[tuple[str, str]] = field(default_factory=set)
    #: Streams a forgery was published on: the only ones :func:`false_supersedes`
    #: judges (elsewhere a real turn, e.g. one a failover gave the stream back to, may
    #: end readers; the checker in model/ judges those).
    forged_streams: set[str] = field(default_factory=set)
    #: The foreign client (one per world, made at its first forgery).
    foreign: RedisLike | None = None


# -- the foreign client --------------------------------------------------------------


def forge(world: World, stream_id: str, form: Forgery, which: int) -> None:
    """Start the foreign client's publish (it runs when the simulated Redis steps it)."""
    world.hostile.forged_streams.add(stream_id)
    world.start_task(_forge, world, stream_id, form, which)


async def _forge(world: World, stream_id: str, form: Forgery, which: int) -> None:
    if world.hostile.foreign is None:
        if isinstance(world.sim, SharedMemory):
            return  # an in-process hub has no channel a foreign client could reach
        world.hostile.foreign = world.sim.client(FOREIGN_CLIENT)
    client = world.hostile.foreign
    try:
        payloads = await _payloads(client, world, stream_id, form, which)
        for payload in payloads:
            await client.publish(Keys.channel(stream_id), payload)
    except RedisConnectionError:
        return  # a fault took the foreign client's connection: nothing was forged


def _current_generation(world: World, stream_id: str) -> str | None:
    gen = world.generators.get(stream_id)
    return gen.job.generation if gen is not None and gen.job is not None else None


def _envelope(kind: str, generation: object, seq: object, body: object) -> str:
    key = "error" if kind == "error" else "data"
    return json.dumps({"type": kind, "seq": seq, "generationId": generation, key: body})


async def _payloads(
    client: RedisLike, world: World, stream_id: str, form: Forgery, which: int
) -> list[str]:
    own = _current_generation(world, stream_id) or FORGED_GENERATIONS[0]
    other = FORGED_GENERATIONS[which % len(FORGED_GENERATIONS)]
    kind = ("chunk", "done", "error")[which % 3]
    body = {"forged": which} if kind != "error" else f"forged error {which}"
    match form:
        case Forgery.GARBAGE:
            return [("not json {", "\x00\xff\x01", "", "[1, 2, 3]")[which % 4]]
        case Forgery.WRONG_TYPES:
            return [
                (
                    _envelope(kind, own, str(which), body),
                    _envelope(kind, own, which + 0.5, body),
                    _envelope(kind, which, which, body),
                    _envelope("shout", own, which, body),
                    _envelope(kind, own, True, body),
                )[which % 5]
            ]
        case Forgery.OTHER_GENERATION:
            # At the next seq the counter hands out and the one after: where a reader
            # that is up to date waits, and just past it.
            nxt = await _next_seq(client, stream_id)
            return [_envelope(kind, other, nxt + ahead, body) for ahead in (0, 1)]
        case Forgery.ABSURD_SEQ:
            absurd: int | float = (10**14 + which, MAX_SEQ, MAX_SEQ + 1, 1e300)[which % 4]
            return [_envelope(kind, (own, other)[which % 2], absurd, body)]
        case Forgery.NEGATIVE_SEQ:
            return [_envelope(kind, (own, other)[which % 2], -1 - which, body)]
        case Forgery.OWN_GENERATION_AHEAD:
            ahead = (1_000 + which, 10**12 + which, MAX_SEQ - which)[which % 3]
            seq = min(await _next_seq(client, stream_id) + ahead, MAX_SEQ)
            return [_envelope(kind, own, seq, body)]
        case Forgery.REPLAY:
            return await _replayed(client, stream_id, which)
        case Forgery.ABORT:
            return [encode_abort(own)]


async def _next_seq(client: RedisLike, stream_id: str) -> int:
    """The seq the stream's counter hands out next (it holds that number)."""
    value = await client.get(Keys().seq(stream_id))
    return int(value) if value is not None else 0


async def _replayed(client: RedisLike, stream_id: str, which: int) -> list[str]:
    """A message the publish script once sent, rebuilt byte for byte from its log row."""
    rows = await client.xrange(Keys().chunks(stream_id), "-", "+", REPLAY_WINDOW)
    sent = [fields for _, fields in rows if fields.get("type") in ("chunk", "done", "error")]
    if not sent:
        return []
    fields = sent[which % len(sent)]
    kind = fields["type"]
    body = fields.get("error", "") if kind == "error" else json.loads(fields["event"])
    prefix, suffix = encode_split(kind, fields["gen"], body)
    return [f"{prefix}{fields['seq']}{suffix}"]


# -- a failing actor -------------------------------------------------------------------


class InjectedActorFault(RuntimeError):
    """The error :class:`FaultInjectingActor` raises: a bug in one stream's actor."""


class _QuietAboutInjectedFaults(logging.Filter):
    """The actor logs an unexpected error with its traceback, as it should; one the
    run injected on purpose is no news, and its traceback would bury real output."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, InjectedActorFault)


logging.getLogger(StreamActor.__module__).addFilter(_QuietAboutInjectedFaults())


class FaultInjectingActor(StreamActor):
    """impl's actor, able to fail once on purpose: armed, it raises an unexpected
    error in its own task at the next command it handles (see :func:`fail_actor`)."""

    #: Every live instance, so that a decision can find the actor of one stream on
    #: one replica without a door into the transport.
    instances: ClassVar[weakref.WeakSet[FaultInjectingActor]] = weakref.WeakSet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._armed = False
        FaultInjectingActor.instances.add(self)

    def arm(self) -> None:
        self._armed = True
        self._tell(Rearm())  # wake the actor's task: the fault happens there

    async def _handle(self, command: Command) -> None:
        if self._armed:
            self._armed = False
            raise InjectedActorFault(f"injected fault in the actor of {self.stream_id}")
        await super()._handle(command)


def with_fault_injection(parts: ReplicaParts) -> ReplicaParts:
    """``parts`` with an actor that can be made to fail (the fault mixin in front)."""
    return dataclasses.replace(parts, actor=_faulting(parts.actor))


_FAULTING: dict[type[StreamActor], type[StreamActor]] = {}


def _faulting(actor: type[StreamActor]) -> type[StreamActor]:
    if issubclass(actor, FaultInjectingActor):
        return actor
    if actor not in _FAULTING:
        _FAULTING[actor] = type(f"FaultInjecting{actor.__name__}", (FaultInjectingActor, actor), {})
    return _FAULTING[actor]


def fail_actor(world: World, replica: int, stream_id: str) -> bool:
    """Make the actor of ``stream_id`` on ``replica`` fail (if it has one running);
    the world then knows that its readers there may end with the actor's failure."""
    target = world.replicas[replica % len(world.replicas)]
    if target.manager is None:
        return False
    bus = target.manager.transport._bus
    for actor in list(FaultInjectingActor.instances):
        if actor.stream_id == stream_id and actor._bus is bus and not actor._stopped:
            world.hostile.faulted.add((target.name, stream_id))
            actor.arm()
            return True
    return False


# -- figures ---------------------------------------------------------------------------


def channel_figures(world: World) -> dict[str, int]:
    """Channel messages the world's replicas dropped: ``foreign_hints`` (live messages
    the log did not confirm, counted per reader that heard one), ``malformed_dropped``
    (payloads no envelope, on replicas alive at the end) and ``unconfirmed_aborts``
    (abort signals for a generator running there that no abort had claimed)."""
    foreign = sum(totals.foreign_hints for totals in world.crashed_delivery)
    aborts = sum(totals.unconfirmed_aborts for totals in world.crashed_delivery)
    malformed = 0
    for replica in world.replicas:
        if replica.manager is not None:
            stats = replica.manager.transport.statistics()
            foreign += stats.delivery.foreign_hints
            aborts += stats.delivery.unconfirmed_aborts
            malformed += stats.malformed_dropped
    return {"foreign_hints": foreign, "malformed_dropped": malformed, "unconfirmed_aborts": aborts}


def hostile_labels(world: World) -> set[str]:
    """Rare paths of the hostile rules this run reached (see World.coverage_labels)."""
    labels: set[str] = set()
    figures = channel_figures(world)
    if any(figures.values()):
        labels.add("untrusted channel message dropped")
    if figures["unconfirmed_aborts"]:
        labels.add("unclaimed abort signal dropped")
    if world.hostile.faulted:
        labels.add("actor failed, replica went on")
    return labels


# -- judging ---------------------------------------------------------------------------


def judged(report: CheckReport, world: World) -> CheckReport:
    """``report`` with :func:`false_supersedes`'s findings added."""
    extra = false_supersedes(
        world.history, _superseded_generations(world), world.hostile.forged_streams
    )
    if not extra:
        return report
    anomalies = tuple(sorted((*report.anomalies, *extra), key=lambda a: a.first_bad))
    return dataclasses.replace(report, anomalies=anomalies)


def _superseded_generations(world: World) -> set[str]:
    """Generations a newer turn of their stream may have replaced: a turn was asked
    for after theirs (every create attempt counts, answered or not: a create whose
    answer was lost may still have replaced the job)."""
    superseded: set[str] = set()
    for position, gen in enumerate(world.all_generators):
        if gen.job is not None and any(
            later.stream_id == gen.stream_id for later in world.all_generators[position + 1 :]
        ):
            superseded.add(gen.job.generation)
    started = {gen.job.generation for gen in world.all_generators if gen.job is not None}
    # A generation the world did not start (none in the simulation) is not judged.
    superseded |= {
        record.generation
        for record in world.history.records
        if isinstance(record, SessionOpened) and record.generation not in started
    }
    return superseded


def false_supersedes(
    history: History, superseded: set[str], forged_streams: set[str]
) -> list[Anomaly]:
    """Readers ended "superseded" although no newer turn of their stream was ever
    started: only a generation the job confirms as newer may end a reader so.
    ``superseded``: the generations a newer turn may have replaced; only streams in
    ``forged_streams`` (a foreign client published there) are judged. Once Redis lost
    writes nothing is judged: a failover that lost a new turn's job gives the stream
    back to the turn before it, whose events then rightly end the new turn's readers."""
    opened: dict[str, SessionOpened] = {}
    found: list[Anomaly] = []
    for record in history.records:
        if isinstance(record, WritesLost):
            break
        if isinstance(record, SessionOpened):
            opened[record.session] = record
        elif (
            isinstance(record, Delivered)
            and isinstance(record.event, Failure)
            and record.event.message == SUPERSEDED
            and (session := opened.get(record.session)) is not None
            and session.stream_id in forged_streams
            and session.generation not in superseded
        ):
            found.append(
                Anomaly(
                    kind=AnomalyKind.FALSE_SUPERSEDED,
                    session=session.session,
                    stream_id=session.stream_id,
                    generation=session.generation,
                    seq=record.event.seq,
                    first_bad=record.index,
                    last_good=None,
                    explanation=(
                        f"session {session.session} was ended 'superseded' although no "
                        f"newer turn of stream {session.stream_id} was ever started; only "
                        "a generation the job confirms as newer may end a reader so"
                    ),
                )
            )
    return found


__all__ = [
    "ABORT_REACTIONS",
    "FORGERIES",
    "FaultInjectingActor",
    "Forgery",
    "HostileState",
    "InjectedActorFault",
    "channel_figures",
    "fail_actor",
    "false_supersedes",
    "forge",
    "hostile_labels",
    "judged",
    "with_fault_injection",
]
