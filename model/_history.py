"""A history: what happened in one run, as the checker needs it.

Every record carries ``index`` (its position, assigned by :class:`History`) and
``time`` (simulated or wall seconds). Producers of histories (the simulation, the
real-Redis tier) append records as things happen; the checker judges the whole list.

Vocabulary:

* a **generation** is one turn on a stream id (``stream_id`` + ``generation``);
* a **session** is one subscriber attachment (``subscribe`` or ``resume``) by one user
  on one replica; it ends with its terminal, a detach, or its replica's crash.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace

from streamcheck.model._events import Chunk, Done, Failure, JSONValue, StreamEvent


def digest(value: JSONValue) -> str:
    """Stable short digest of a payload (content comparisons without storing it)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def event_digest(event: StreamEvent) -> str | None:
    """The digest a delivery is compared by: its payload's (a gap has none)."""
    if isinstance(event, Chunk | Done):
        return digest(event.data)
    if isinstance(event, Failure):
        return digest(event.message)
    return None


class EmitKind(enum.StrEnum):
    CHUNK = "chunk"
    DONE = "done"
    ERROR = "error"


class OpOutcome(enum.StrEnum):
    """Jepsen's three answers: it happened, it did not, or we cannot know."""

    OK = "ok"
    FAIL = "fail"
    INDETERMINATE = "indeterminate"


class SessionMode(enum.StrEnum):
    SUBSCRIBE = "subscribe"
    RESUME = "resume"
    #: The client reattaches from a cursor it holds (a generation and the last seq it
    #: has): owed that generation's events after the cursor, with no snapshot.
    CURSOR = "cursor"


class SessionEnd(enum.StrEnum):
    TERMINAL = "terminal"  # the session delivered its terminal and closed
    DETACHED = "detached"  # the client left on purpose
    REPLICA_CRASHED = "replica_crashed"  # the serving replica died
    CLOSED = "closed"  # the stream ended without a terminal (channel closed)
    #: The serving replica's actor for the stream failed: the session got the typed
    #: failure that tells its client to resume elsewhere. Like a crash of the serving
    #: replica, it claims neither completeness nor liveness for the session.
    STREAM_FAILED = "stream_failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationStarted:
    index: int = -1
    time: float
    stream_id: str
    generation: str
    user_id: str
    replica: str
    start_seq: int
    #: The earliest the create can have started (its planned time), where known.
    invoked: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Emitted:
    """The generator's emit returned. ``seq`` is known only when ``outcome`` is OK."""

    index: int = -1
    time: float
    stream_id: str
    generation: str
    replica: str
    kind: EmitKind
    payload_digest: str
    outcome: OpOutcome
    seq: int | None = None
    #: The terminal an abort published for the turn (not the generator's own end).
    by_abort: bool = False
    #: The earliest the emit can have started, where known (protocol agents say).
    invoked: float | None = None
    #: How many records the history held when the emit was invoked (so every record
    #: with a lower index happened before it started); ``None`` when not recorded.
    invoked_index: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AbortRequested:
    """An abort returned on ``replica``; ``acknowledged`` when it reported ABORTED."""

    index: int = -1
    time: float
    stream_id: str
    generation: str | None
    replica: str
    user_id: str
    acknowledged: bool
    outcome: OpOutcome
    #: The earliest the abort can have started (its planned time), where known.
    invoked: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratorStopped:
    """The generator observed its stop signal and stopped emitting."""

    index: int = -1
    time: float
    stream_id: str
    generation: str
    #: An abort stopped it (not the turn ending some other way, e.g. judged lost).
    by_abort: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionOpened:
    """``first_seq`` is the first seq the session is owed (start or snapshot + 1)."""

    index: int = -1
    time: float
    session: str
    stream_id: str
    generation: str
    user_id: str
    owner_id: str
    replica: str
    mode: SessionMode
    first_seq: int
    #: For resumes: digests of the chunks folded into the snapshot, in seq order.
    snapshot_seqs: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivered:
    index: int = -1
    time: float
    session: str
    event: StreamEvent
    #: Digest of the chunk data / done data / error message (None for gaps).
    payload_digest: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionClosed:
    index: int = -1
    time: float
    session: str
    reason: SessionEnd


@dataclass(frozen=True, kw_only=True, slots=True)
class BoundExceeded:
    """A replica held more of a bounded resource than its limit (e.g. an early buffer
    past its event cap): the memory-growth bugs that no delivery anomaly shows."""

    index: int = -1
    time: float
    replica: str
    stream_id: str
    resource: str
    value: int
    limit: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WritesLost:
    """Redis lost ``writes`` acknowledged writes (a failover promoted a replica that
    lacked them). Across such a record a generation may end twice or emit past its
    terminal, because the write that ended it is gone; readers still may not see it."""

    index: int = -1
    time: float
    writes: int


class RefusalReason(enum.StrEnum):
    """Why an implementation said no, in the replica protocol's words."""

    #: The turn has ended (or the call came after the generator was told to stop).
    FINISHED = "finished"
    #: No such stream or turn.
    ABSENT = "absent"
    #: The stream is not the caller's (or, for implementations that hide whether a
    #: stream exists, absent).
    DENIED = "denied"
    #: Any other word: recorded, never judged.
    OTHER = "other"


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRefused:
    """A call the implementation declined on purpose, judged against the turn's state
    over the call: between ``invoked`` (the earliest it can have started) and ``time``
    (its answer). ``storage_reliable`` is false when the run's faults may have made the
    storage forget the turn (an in-memory server restarted, the generator's replica
    killed): then none is judged."""

    index: int = -1
    time: float
    invoked: float
    stream_id: str
    #: The turn an emit, done or error belonged to; ``None`` for calls on the stream.
    generation: str | None
    call: str
    user_id: str
    replica: str
    reason: RefusalReason
    #: The implementation's own word for it.
    word: str
    storage_reliable: bool = True


class FaultKind(enum.StrEnum):
    """What the world did to the system (see :class:`FaultInjected`)."""

    #: A pub/sub message was lost on its way to one connection (or to all of them).
    DROP = "drop"
    #: A client connection to Redis was cut.
    DISCONNECT = "disconnect"
    #: The Redis primary failed over (whether or not it lost writes).
    FAILOVER = "failover"
    #: A replica process died (``detail`` names it).
    CRASH = "crash"
    #: The clock jumped while messages were still on their way (they arrive late).
    DELAY = "delay"
    #: A foreign client published on a stream's channel (``detail`` says what): a
    #: parked forgery may cost readers a reorder timeout before the log disproves it.
    FORGERY = "forgery"
    #: An unexpected error was raised inside one stream's actor on one replica.
    ACTOR_FAULT = "actor_fault"


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultsRecorded:
    """The history's producer records every fault it causes (:class:`FaultInjected`,
    :class:`WritesLost`) and every slow-path delivery (:class:`SlowPath`): so a gap or a
    slow path can be judged against what really happened, not only excused."""

    index: int = -1
    time: float
    #: A chunk-log entry stays at least this many seconds after it was written (the
    #: shortest TTL the store gives a log); later it may expire. ``None``: never.
    log_ttl_s: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultInjected:
    """The world caused a fault. ``detail`` says where (a replica, a connection)."""

    index: int = -1
    time: float
    fault: FaultKind
    detail: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class SlowPath:
    """Readers on ``replica`` took the slow path since the previous such record: a reorder
    timeout fired ``reorder_timeouts`` times, and ``log_repaired`` events were delivered
    from the chunk log by a repair or an idle probe instead of by pub/sub. Of those, up
    to ``raced`` may only have won a race with their own live copy: it was published,
    or still on its way to the replica, when the log read was sent."""

    index: int = -1
    time: float
    replica: str
    reorder_timeouts: int
    log_repaired: int
    raced: int = 0

    @property
    def needs_cause(self) -> bool:
        """Pub/sub failed these readers (a timeout, an event it never brought), rather
        than a log read going first."""
        return self.reorder_timeouts > 0 or self.log_repaired > self.raced


@dataclass(frozen=True, kw_only=True, slots=True)
class JobObserved:
    """The shared job store's record of ``stream_id`` changed: now of ``generation``
    with ``status`` (both ``None``: there is no job). Sampled by the world between
    decisions, so it sees the store's states, not every write."""

    index: int = -1
    time: float
    stream_id: str
    generation: str | None
    status: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyspaceProblem:
    """An audit of the shared store after the heal found ``key`` wrong (``problem``
    says how: no TTL, a job that does not decode, an index that disagrees with jobs)."""

    index: int = -1
    time: float
    key: str
    problem: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Healed:
    """Faults stopped and every timeout passed: from here on, liveness is judged."""

    index: int = -1
    time: float


Record = (
    GenerationStarted
    | Emitted
    | AbortRequested
    | GeneratorStopped
    | SessionOpened
    | Delivered
    | SessionClosed
    | BoundExceeded
    | WritesLost
    | CallRefused
    | FaultsRecorded
    | FaultInjected
    | SlowPath
    | JobObserved
    | KeyspaceProblem
    | Healed
)


@dataclass(slots=True)
class History:
    records: list[Record] = field(default_factory=list)

    def append(self, record: Record) -> Record:
        indexed = replace(record, index=len(self.records))
        self.records.append(indexed)
        return indexed

    def __len__(self) -> int:
        return len(self.records)
